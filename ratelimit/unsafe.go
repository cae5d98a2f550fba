package ratelimit

import "unsafe"

// bytesString returns b's bytes as a string without copying them. b must
// not be written to afterwards; the quota blocks never are.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
