package contract

import "github.com/switchboard-dev/switchboard"

// Endpoints of the customers service (JSON), which keeps rider profiles.
var (
	// RegisterCustomer creates or replaces a customer profile.
	RegisterCustomer = switchboard.Endpoint[*Customer, *Customer](CustomersService, "register")
	// GetCustomer returns a profile, or NotFound.
	GetCustomer = switchboard.Endpoint[*GetCustomerRequest, *Customer](CustomersService, "get_customer")
)

// Customer is a rider's profile.
type Customer struct {
	CustomerID    string  `json:"customerId"`
	Name          string  `json:"name"`
	PaymentMethod string  `json:"paymentMethod,omitempty"`
	Rating        float64 `json:"rating,omitempty"`
}

// GetCustomerRequest names the customer to look up.
type GetCustomerRequest struct {
	CustomerID string `json:"customerId"`
}
