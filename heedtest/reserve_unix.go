//go:build unix

package heedtest

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// reservedPort is a loopback port bound but not listening: the kernel
// refuses connections to it, and no other socket can take it until it
// listens or is released.
type reservedPort struct {
	mu   sync.Mutex
	fd   int // -1 once listening or released
	addr string
}

// reservePort binds a socket to a free loopback port without listening.
func reservePort() (*reservedPort, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: unexpected address %T", sa)
	}
	return &reservedPort{fd: fd, addr: fmt.Sprintf("127.0.0.1:%d", in4.Port)}, nil
}

// listen starts listening on the reserved port.
func (r *reservedPort) listen() (net.Listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil, fmt.Errorf("port %s released", r.addr)
	}
	if err := syscall.Listen(r.fd, syscall.SOMAXCONN); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", r.addr, err)
	}
	f := os.NewFile(uintptr(r.fd), r.addr)
	r.fd = -1
	defer f.Close() // FileListener holds its own copy
	return net.FileListener(f)
}

// release frees a port that never listened.
func (r *reservedPort) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd >= 0 {
		syscall.Close(r.fd)
		r.fd = -1
	}
}
