package outboxtest_test

import (
	"testing"

	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/outboxtest"
)

func TestMemory(t *testing.T) {
	outboxtest.Run(t, func(*testing.T) outbox.Store { return new(outboxtest.Memory) })
}
