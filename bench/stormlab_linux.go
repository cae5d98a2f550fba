package bench

import (
	"os/exec"
	"syscall"
)

// labChildAttr has the kernel kill a lab child if the lab dies first (more
// exactly, if the thread that started it exits, which Go's runtime does
// only for a locked thread): a backstop to the lab's context timeout.
func labChildAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
