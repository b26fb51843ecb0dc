// Package resilience protects the call path between Switchboard services:
// retries with a budget, circuit breakers, rate limits and adaptive load
// shedding, each a middleware of package switchboard.
//
// Client side (switchboard.ClientMiddleware, install with
// switchboard.WithClientMiddleware or Service's WithClientOptions):
//
//   - Retry retries calls that failed for a reason that is safe to retry,
//     with exponential backoff and full jitter, honouring Retry-After hints,
//     never past the caller's deadline, within a retry Budget.
//   - Breaker fails calls fast while a target service, endpoint or
//     instance is unhealthy, and probes it to find out when it is back.
//   - RateLimit.Client caps the calls sent to a target that cannot scale.
//
// Server side (switchboard.Middleware, install with switchboard.WithMiddleware):
//
//   - RateLimit.Server caps calls per endpoint, per caller, or any key.
//   - Shed keeps an adaptive concurrency limit per endpoint and rejects the
//     excess at once, so that an overloaded service serves what it admits at
//     bounded latency instead of letting every call time out.
//
// Defaults returns the recommended set. Every error a protection returns is a
// *bus.Error whose code, message and details say which protection decided
// and why (see docs/resilience.md); Decision values passed to each
// protection's Observe hook carry the same reasons for metrics and logs.
//
// The package sits above the SDK in the layers (bus ← wire ← SDK ←
// resilience) and imports no broker client.
package resilience
