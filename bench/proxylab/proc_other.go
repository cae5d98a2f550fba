//go:build !linux

package main

import (
	"errors"
	"os"
	"os/exec"
)

// The harness is meant for Linux (it reads /proc for memory); elsewhere it
// builds, so its tests run, and signals only the child itself.

func childAttr(*exec.Cmd) {}

func signalGroup(cmd *exec.Cmd, kill bool) {
	if kill {
		_ = cmd.Process.Kill()
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
}

func raiseNoFile(want uint64) (uint64, error) {
	return 0, errors.New("raising the open-file limit is done on Linux only")
}
