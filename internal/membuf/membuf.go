// Package membuf allocates large, long-lived I/O buffers outside the Go heap (anonymous memory
// maps on Linux). The garbage collector sizes its next cycle relative to the live heap: budgeted
// upload and compression buffers on the heap would let the heap (and the process's RSS) grow to
// twice their size between cycles. Outside it, the heap stays small and the buffers count once.
package membuf

// Alloc returns n zeroed bytes outside the Go heap where the platform allows (else on the heap).
// The memory stays valid until Free; it must not hold Go pointers.
func Alloc(n int) []byte { return alloc(n) }

// Free unmaps b (from Alloc). Nothing may use b afterwards: call it only once no goroutine can
// still read or write it.
func Free(b []byte) { free(b) }

// Release gives b's pages back to the system while keeping it valid (it reads as zeros after).
// It is safe however b is still referenced, so idle pools call it instead of Free.
func Release(b []byte) { release(b) }
