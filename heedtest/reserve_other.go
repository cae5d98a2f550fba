//go:build !unix

package heedtest

import (
	"net"
	"sync"
)

// reservedPort is a loopback port left unbound, to be listened on later.
// Without a way to bind a socket without listening, another socket may
// take the port meanwhile, which is rare (see DeadAddr).
type reservedPort struct {
	mu   sync.Mutex
	addr string
}

func reservePort() (*reservedPort, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, err
	}
	return &reservedPort{addr: addr}, nil
}

func (r *reservedPort) listen() (net.Listener, error) { return net.Listen("tcp", r.addr) }

func (r *reservedPort) release() {}
