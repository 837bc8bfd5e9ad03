//go:build linux

package membuf

import (
	"sync"
	"syscall"
	"unsafe"
)

// mapped records the maps Alloc made, so Free never unmaps anything else (a heap fallback).
var mapped sync.Map // uintptr -> struct{}

func alloc(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil || n == 0 {
		return make([]byte, n)
	}
	mapped.Store(uintptr(unsafe.Pointer(&b[0])), struct{}{})
	return b
}

func free(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:cap(b)]
	if _, ok := mapped.LoadAndDelete(uintptr(unsafe.Pointer(&b[0]))); ok {
		syscall.Munmap(b)
	}
}

func release(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:cap(b)]
	if _, ok := mapped.Load(uintptr(unsafe.Pointer(&b[0]))); ok {
		syscall.Madvise(b, syscall.MADV_DONTNEED)
	}
}
