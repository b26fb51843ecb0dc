package workload_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The generator and every service, client and bus a test starts are stopped
// by its end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
