//go:build unix

package devstate

import "syscall"

var syscall0 = syscall.Signal(0)
