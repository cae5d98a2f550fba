// Package groupcommit makes concurrent callers share commits: while one
// commit is being written, the callers that arrive queue, and when it
// ends the first of them commits everything that queued meanwhile, in one
// go. No caller waits for a timer: a lone caller commits at once, and
// under load a commit carries as many items as arrived during the one
// before it. No caller commits for others more than once.
package groupcommit

import "sync"

// Group batches items of type T. The zero value is ready to use.
type Group[T any] struct {
	mu         sync.Mutex
	queue      []*waiter[T]
	committing bool
}

type waiter[T any] struct {
	item T
	err  error
	wake chan struct{} // the commit is done, or the caller now leads the next
	lead bool          // set before wake: the caller commits the queue
}

// Do queues item and returns once commit has committed it, with the error
// commit gave it. commit gets the items in the order they queued and
// returns one error for each (nil for all succeeded); it runs on the
// goroutine of the caller that leads the batch, one commit at a time.
func (g *Group[T]) Do(item T, commit func(batch []T) []error) error {
	w := &waiter[T]{item: item, wake: make(chan struct{}, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.committing {
		g.mu.Unlock()
		<-w.wake
		if !w.lead {
			return w.err
		}
		g.mu.Lock()
	}
	g.committing = true
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()

	items := make([]T, len(batch))
	for i, b := range batch {
		items[i] = b.item
	}
	errs := commit(items)
	for i, b := range batch {
		if errs != nil {
			b.err = errs[i]
		}
		if b != w {
			b.wake <- struct{}{}
		}
	}

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	} else {
		g.committing = false
	}
	g.mu.Unlock()
	return w.err
}
