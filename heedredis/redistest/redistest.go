// Package redistest runs a real redis-server for tests of code that uses
// heedredis, and for heedredis's own: on a free loopback port, without
// persistence, stopped when the test ends. It can stop, pause (SIGSTOP)
// and restart the process, for fault tests. It needs redis-server on the
// PATH (apt-get install -y redis-server).
package redistest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TB is the part of testing.TB the server needs; examples can provide it.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

var _ TB = testing.TB(nil)

// Server is a running redis-server.
type Server struct {
	tb   TB
	Addr string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server on 127.0.0.1 and stops it when tb ends. It
// fails tb when redis-server is not installed (apt-get install -y
// redis-server; .ci/run does it).
func Start(tb TB) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("heedredis tests need a real redis-server: apt-get install -y redis-server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Server{tb: tb, Addr: "127.0.0.1:" + strconv.Itoa(port), port: port}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() { cmd.Wait(); close(done) }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s did not answer: %v", s.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (it is resumed first if paused) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start()
}

// Pause stops the process with SIGSTOP: connections stay open and every
// call hangs, as with a server stuck in a long command or a network
// partition. Resume continues it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		s.tb.Fatal("redistest: server not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatal(fmt.Errorf("redistest: %v: %w", sig, err))
	}
}

// Client returns a client of the server with short timeouts that honours
// its calls' context deadlines (as heedredis requires), closed when tb
// ends.
func (s *Server) Client(tb TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 100 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1,
		ContextTimeoutEnabled: true})
	tb.Cleanup(func() { c.Close() })
	return c
}
