package ridehail_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every service, client and bus a test starts is stopped by its end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
