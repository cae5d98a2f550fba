// Package outboxcrash tests that heed's outbox loses nothing and doubles
// nothing when the process writing to it is killed: a loopback API that
// deduplicates writes by Idempotency-Key, a writer that runs in a child
// process (the test binary run again), and a driver that kills the writer
// with SIGKILL at random moments and starts it again, then checks that
// every write took effect exactly once.
package outboxcrash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/backoff"
	"github.com/heed-go/heed/breaker"
	"github.com/heed-go/heed/outbox"
)

// Server is an API on loopback that deduplicates writes by their
// Idempotency-Key, as Stripe's does: the first request with a key takes
// effect, later ones get the same answer and change nothing. While down,
// it answers 503 to everything.
type Server struct {
	URL string
	// Latency is how long a write that takes effect takes to serve: a
	// real API is not instant, and replays must be under way when the
	// writer is killed.
	Latency time.Duration
	srv     *httptest.Server

	mu       sync.Mutex
	down     bool
	effects  map[string]int // Idempotency-Key -> effects (never above 1 at a deduplicating server)
	repeats  map[string]int // Idempotency-Key -> requests after the one that took effect
	bodies   map[string]string
	mismatch int // requests whose body differed from the first's for their key
}

// NewServer starts the API, down, and closes it when t ends.
func NewServer(t testing.TB) *Server {
	s := &Server{down: true, effects: map[string]int{}, repeats: map[string]int{}, bodies: map[string]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// SetDown makes the API answer 503 (true) or serve (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if key == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if first, ok := s.bodies[key]; ok {
		s.repeats[key]++
		if first != string(body) {
			s.mismatch++
		}
		w.WriteHeader(http.StatusCreated) // the first answer again
		return
	}
	s.bodies[key] = string(body)
	s.effects[key]++
	if s.Latency > 0 {
		s.mu.Unlock() // the effect is recorded: later copies of the key see it
		time.Sleep(s.Latency)
		s.mu.Lock()
	}
	w.WriteHeader(http.StatusCreated)
}

// Tally is what the server saw.
type Tally struct {
	Effects, Missing, Doubled, Repeats, Mismatched int
}

// Tally counts the effects of keys 0 to n-1.
func (s *Server) Tally(n int) Tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t Tally
	for i := range n {
		switch e := s.effects[Key(i)]; {
		case e == 0:
			t.Missing++
		case e > 1:
			t.Doubled++
		}
		t.Effects += s.effects[Key(i)]
		t.Repeats += s.repeats[Key(i)]
	}
	t.Mismatched = s.mismatch
	return t
}

// Key is write i's Idempotency-Key.
func Key(i int) string { return "order-" + strconv.Itoa(i) }

// ChildEnv names the environment variable that makes a test binary the
// writer: it holds the writer's Config as JSON.
const ChildEnv = "HEED_OUTBOX_CRASH_CHILD"

// Config is the writer's.
type Config struct {
	URL      string `json:"url"`
	KeysFile string `json:"keys_file"` // the writes to make, a number per line
	Store    string `json:"store"`     // the store's address (a file, or a Redis name)
	Worker   string `json:"worker"`    // the worker's name, for a shared store
	Senders  int    `json:"senders"`   // writes made at once
	Rate     int    `json:"rate"`      // writes started per second; 0: as fast as the senders go
	Lease    time.Duration
	// Stay keeps the writer replaying once the store is empty, until it is
	// killed: a worker beside the writers.
	Stay bool `json:"stay"`
}

// Command returns the command that runs this test binary again as a
// writer with c.
func Command(c Config) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(c)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(b))
	return cmd
}

// MaxChildLife bounds a writer's life, so that one whose test failed
// does not run on.
const MaxChildLife = 3 * time.Minute

// ChildConfig returns the writer's Config when this process is a writer.
func ChildConfig() (Config, bool) {
	v := os.Getenv(ChildEnv)
	if v == "" {
		return Config{}, false
	}
	var c Config
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		fmt.Fprintln(os.Stderr, "outboxcrash:", err)
		os.Exit(2)
	}
	return c, true
}

// Child is the writer. It makes the writes in c.KeysFile through a heed
// policy whose outbox is store, printing "ack N" on out once write N was
// either accepted by the server or queued (durable, either way), while a
// replay worker delivers what was queued. It returns once every write was
// acknowledged and the store is empty, or when ctx ends.
func Child(ctx context.Context, c Config, store outbox.Store, out io.Writer) error {
	keys, err := readKeys(c.KeysFile)
	if err != nil {
		return err
	}
	p, err := heed.NewPolicy(
		heed.WithLogger(nil),
		heed.WithMaxAttempts(2),
		heed.WithBackoff(backoff.Constant(5*time.Millisecond)),
		heed.WithBreaker(breaker.Settings{OpenTimeout: 200 * time.Millisecond, MaxOpenTimeout: 400 * time.Millisecond}),
		heed.WithOutbox(heed.Outbox{
			Store: store, Backoff: backoff.Full(20*time.Millisecond, 300*time.Millisecond),
			Concurrency: 16, Poll: 50 * time.Millisecond,
		}),
	)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, deferred below: the worker ends with ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { p.Replay(ctx) })

	var mu sync.Mutex
	ack := func(i int) {
		mu.Lock()
		fmt.Fprintf(out, "ack %d\n", i) // one write: the parent sees it even if this process dies next
		mu.Unlock()
	}
	work := make(chan int)
	client := &http.Client{Transport: p.Transport()}
	var senders sync.WaitGroup
	for range max(c.Senders, 1) {
		senders.Go(func() {
			for i := range work {
				if send(ctx, client, c.URL, i) {
					ack(i)
				}
			}
		})
	}
	began := time.Now()
	for n, i := range keys {
		if c.Rate > 0 { // the writes of a live service come over time, not at once
			time.Sleep(time.Until(began.Add(time.Duration(n) * time.Second / time.Duration(c.Rate))))
		}
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	senders.Wait()
	for ctx.Err() == nil {
		st, err := store.Stats(ctx)
		if err == nil && st.Pending == 0 && !c.Stay {
			if st.Dead != 0 {
				return fmt.Errorf("%d dead entries", st.Dead)
			}
			fmt.Fprintln(out, "drained")
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}

// Main is a writer process's main: it opens the store with open, runs
// Child (bounded by MaxChildLife) on standard output, closes the store,
// and returns the exit code.
func Main(c Config, open func(Config) (outbox.Store, func() error, error)) int {
	ctx, cancel := context.WithTimeout(context.Background(), MaxChildLife)
	defer cancel()
	s, closeStore, err := open(c)
	if err == nil {
		err = Child(ctx, c, s, os.Stdout)
		closeStore()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// send makes write i and reports whether it is safe: delivered or queued.
func send(ctx context.Context, client *http.Client, url string, i int) bool {
	body := fmt.Sprintf(`{"order":%d,"amount":%d}`, i, 100+i%997)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/orders", strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Idempotency-Key", Key(i))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return errors.Is(err, heed.ErrQueued)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode < 300
}

func readKeys(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []int
	for _, f := range strings.Fields(string(b)) {
		i, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, i)
	}
	return keys, nil
}

// Run drives the writers: it kills them at random moments and starts them
// again, then lets one finish.
type Run struct {
	Writes, Kills int
	Seed          uint64
	// Life bounds how long a writer lives before it is killed, drawn
	// uniformly in [Life/4, Life].
	Life time.Duration
	// UpAfter is the kill after which the API comes up: the kills before
	// it fall while writes are being queued, the ones after it while
	// queued writes are being replayed.
	UpAfter int
	// Start starts a writer for the writes in keysFile; round counts from
	// 0 (the last one is never killed).
	Start func(round int, keysFile string) *exec.Cmd
	// Inspect, if set, reads the store between a kill and the next start.
	Inspect func() (outbox.Stats, error)
	// Timeout bounds the last writer. Default 60 s.
	Timeout time.Duration
	// Beside, if set, starts a worker that runs beside the writers from
	// the start to the end, never killed (a second replica).
	Beside func() *exec.Cmd
}

// Report is what a Run saw.
type Report struct {
	Tally
	Kills, KilledSending, KilledReplaying int
	MaxPending                            int
	Elapsed                               time.Duration
}

// Do runs r against srv and returns what happened; it fails t on an error
// of its own (a writer that cannot start, a store that cannot be read).
func (r Run) Do(t testing.TB, srv *Server) Report {
	t.Helper()
	start := time.Now()
	rng := rand.New(rand.NewPCG(r.Seed, r.Seed^0x9e3779b97f4a7c15))
	unacked := map[int]bool{}
	for i := range r.Writes {
		unacked[i] = true
	}
	var rep Report
	dir := t.TempDir()
	if r.Beside != nil {
		w := r.Beside()
		var stderr strings.Builder
		w.Stderr = &stderr
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			w.Process.Kill()
			if err := w.Wait(); err != nil && !strings.Contains(err.Error(), "killed") {
				t.Errorf("the worker beside: %v\n%s", err, stderr.String())
			}
		}()
	}
	for round := 0; ; round++ {
		last := round == r.Kills
		if last {
			srv.SetDown(false)
		}
		keysFile := filepath.Join(dir, fmt.Sprintf("keys-%d", round))
		var b strings.Builder
		for i := range r.Writes {
			if unacked[i] {
				fmt.Fprintln(&b, i)
			}
		}
		if err := os.WriteFile(keysFile, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		sending := len(unacked) > 0
		cmd := r.Start(round, keysFile)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acks := make(chan []int)
		drained := make(chan bool, 1)
		go func() {
			var got []int
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if n, ok := strings.CutPrefix(line, "ack "); ok {
					if i, err := strconv.Atoi(n); err == nil {
						got = append(got, i)
					}
				} else if line == "drained" {
					drained <- true
				}
			}
			acks <- got
		}()
		if last {
			timeout := r.Timeout
			if timeout == 0 {
				timeout = 60 * time.Second
			}
			timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
			got := <-acks
			err := cmd.Wait()
			timer.Stop()
			for _, i := range got {
				delete(unacked, i)
			}
			if err != nil {
				t.Fatalf("the last writer: %v (timeout %v)\n%s", err, timeout, stderr.String())
			}
			if len(unacked) > 0 {
				t.Fatalf("%d writes never acknowledged", len(unacked))
			}
			break
		}
		life := r.Life/4 + time.Duration(rng.Int64N(int64(r.Life-r.Life/4)+1))
		time.Sleep(life)
		cmd.Process.Signal(syscall.SIGKILL)
		got := <-acks
		cmd.Wait()
		select {
		case <-drained:
			t.Logf("round %d: the writer had drained the store before its kill", round)
		default:
		}
		for _, i := range got {
			delete(unacked, i)
		}
		rep.Kills++
		if sending && len(unacked) > 0 {
			rep.KilledSending++
		}
		if r.Inspect != nil {
			st, err := r.Inspect()
			if err != nil {
				t.Fatalf("after kill %d the store cannot be read: %v", round+1, err)
			}
			if st.Pending > 0 {
				rep.KilledReplaying++
			}
			rep.MaxPending = max(rep.MaxPending, st.Pending)
			t.Logf("kill %d after %v: %d writes unacknowledged, store %d pending, %d dead", round+1, life.Round(time.Millisecond), len(unacked), st.Pending, st.Dead)
		}
		if round+1 == r.UpAfter {
			srv.SetDown(false)
		}
	}
	srv.SetDown(false)
	rep.Tally = srv.Tally(r.Writes)
	rep.Elapsed = time.Since(start)
	return rep
}
