package amqpbus

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines outlive its tests: every
// consumer's and channel's goroutine ends with Stop or Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
