//go:build !linux

package membuf

func alloc(n int) []byte { return make([]byte, n) }

func free([]byte) {}

func release([]byte) {}
