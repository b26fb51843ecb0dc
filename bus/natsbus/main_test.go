package natsbus

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines outlive its tests: every
// subscription's goroutines end with Stop or Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
