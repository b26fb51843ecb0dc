// Package tracing traces Switchboard calls and events with OpenTelemetry:
// a span for each call on both sides (CLIENT and SERVER), for each publish
// (PRODUCER) and each consume (CONSUMER), with W3C trace context carried in
// the message headers so that one trace follows a request through every
// service it reaches, events included.
//
// It is a cross-cutting package: it sits on the SDK's middleware hooks
// (switchboard.Middleware, ClientMiddleware, PublishMiddleware,
// ConsumerMiddleware), so the SDK itself does not depend on OpenTelemetry.
// Service authors write no tracing code: app.Run and `switchboard dev` set
// up a Pipeline and install it on every service they run.
//
// A Pipeline exports finished spans two ways:
//
//   - over the bus, batched, as compact JSON on Subject (sb.trace.spans), to
//     whatever collects them — package tracestore keeps recent traces in
//     memory and `switchboard trace` shows them — so tracing works with no
//     collector to install. Up to 8192 spans wait for the next batch (sent
//     every Options.BatchTimeout, or as soon as 512 are waiting); past
//     that, spans are dropped and the first drop is logged;
//   - by OTLP/HTTP to an OpenTelemetry collector, when the standard
//     OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
//     variable is set.
//
// Sampling is parent-based: a call continues its caller's decision, and a
// new trace is recorded with probability DefaultRatio (everything in dev).
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG override it, and
// OTEL_SDK_DISABLED=true turns tracing off.
//
// Span attributes follow the OpenTelemetry RPC and messaging semantic
// conventions: rpc.system "switchboard", rpc.service, rpc.method,
// rpc.response.status_code (the Switchboard error code name) and error.type
// on failure; messaging.system "switchboard", messaging.destination.name
// (the topic), messaging.operation.type "send" or "process",
// messaging.message.id (the CloudEvents id) and
// messaging.consumer.group.name. A consumer span is a child of the producer
// span and also links to it, as the messaging conventions recommend, so the
// event's handling is part of the trace that published it.
//
// LogHandler adds trace_id and span_id to log records made with a traced
// context, so that a log line leads to its trace.
//
// With the sampler the Pipeline knows (the default, or ParentBased), the
// middleware makes the spans the SDK would drop without it, and when spans
// go only over the bus it records the sampled ones itself as well
// (lightSpan): the SDK's recording spans and their snapshots are the
// largest part of what a sampled call costs.
//
// What it costs a call (both sides, measured by BenchmarkCallOverhead):
// about 2µs for a call not sampled (the middleware's few hundred
// nanoseconds, the traceparent header on the wire, and the broker and the
// client parsing it), 2.5–3µs at the production default, and about 6µs for
// every call sampled, against an embedded-NATS round trip of about 25µs on
// a two-core machine.
package tracing
