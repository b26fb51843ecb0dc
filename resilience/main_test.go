package resilience_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The protections start no goroutines of their own; every service, client
// and bus a test starts is stopped by its end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
