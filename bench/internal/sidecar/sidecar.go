// Package sidecar starts and stops the heed binary's long-running commands
// (heed proxy, heed faults) for the harnesses that measure them.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts bin with args, its stderr on the harness's.
func Start(ctx context.Context, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = os.Stderr
	return cmd, cmd.Start()
}

// Stop ends cmd with SIGTERM, and SIGKILL if it has not exited within 15 s.
func Stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// WaitReady waits up to 10 s for heed proxy's admin listener to answer
// /readyz with 200.
func WaitReady(admin string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("heed proxy did not become ready within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitListening waits up to 10 s for addr to accept a connection.
func WaitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen within 10 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartProxy starts `heed proxy` in front of upstream with heed's defaults
// and no access log, and waits until it is ready. It returns the proxy's
// address, its admin address and the process.
func StartProxy(ctx context.Context, bin, upstream string) (addr, admin string, cmd *exec.Cmd, err error) {
	if addr, err = FreeAddr(); err != nil {
		return "", "", nil, err
	}
	if admin, err = FreeAddr(); err != nil {
		return "", "", nil, err
	}
	if cmd, err = Start(ctx, bin, "proxy", "-listen", addr, "-upstream", upstream, "-admin", admin, "-access-log=false"); err != nil {
		return "", "", nil, fmt.Errorf("heed proxy: %w", err)
	}
	if err := WaitReady(admin); err != nil {
		Stop(cmd)
		return "", "", nil, err
	}
	return addr, admin, cmd, nil
}
