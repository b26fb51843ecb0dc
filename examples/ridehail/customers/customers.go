// Package customers is the customers service of the ride-hailing example: it
// keeps rider profiles in memory. It starts with a few demo customers (see
// DemoCustomers) so that a trip can be requested by hand right away:
//
//	switchboard call trips request_trip '{"customerId":"ada","pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}'
//
// Its contract (JSON) is in package contract: RegisterCustomer and
// GetCustomer.
package customers

import (
	"context"
	"log/slog"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/recent"
)

// Version is the service version.
const Version = "1.0.0"

// MaxCustomers bounds the profiles held; the oldest registered are
// forgotten first.
const MaxCustomers = 100_000

// DemoCustomers are registered when the service is created.
var DemoCustomers = []contract.Customer{
	{CustomerID: "ada", Name: "Ada Lovelace", PaymentMethod: "card", Rating: 4.9},
	{CustomerID: "grace", Name: "Grace Hopper", PaymentMethod: "card", Rating: 4.8},
	{CustomerID: "alan", Name: "Alan Turing", PaymentMethod: "wallet", Rating: 4.7},
}

// New returns the customers service. A nil logger means slog.Default(); opts
// are applied after the service's own defaults (use them for middleware).
func New(logger *slog.Logger, opts ...switchboard.ServiceOption) *switchboard.Service {
	if logger == nil {
		logger = slog.Default()
	}
	svc := switchboard.NewService(contract.CustomersService, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Rider profiles"),
		switchboard.WithLogger(logger),
	}, opts...)...)
	profiles := recent.New[string, contract.Customer](MaxCustomers)
	for _, c := range DemoCustomers {
		profiles.Put(c.CustomerID, c)
	}
	contract.RegisterCustomer.Handle(svc, func(_ context.Context, c *contract.Customer) (*contract.Customer, error) {
		if err := check.First(check.Required("customerId", c.CustomerID), check.Required("name", c.Name)); err != nil {
			return nil, err
		}
		if !(c.Rating >= 0 && c.Rating <= 5) { // also refuses NaN
			return nil, check.Invalid("rating", "%v is not between 0 and 5", c.Rating)
		}
		if c.PaymentMethod == "" {
			c.PaymentMethod = "card"
		}
		profiles.Put(c.CustomerID, *c)
		return c, nil
	}, switchboard.Describe("Create or replace a customer profile"))
	contract.GetCustomer.Handle(svc, func(_ context.Context, req *contract.GetCustomerRequest) (*contract.Customer, error) {
		if err := check.Required("customerId", req.CustomerID); err != nil {
			return nil, err
		}
		c, ok := profiles.Get(req.CustomerID)
		if !ok {
			return nil, switchboard.Errorf(switchboard.NotFound, "customers: no customer %q", req.CustomerID).WithDetail("customerId", req.CustomerID)
		}
		return &c, nil
	}, switchboard.Describe("A customer's profile, or NotFound"))
	return svc
}
