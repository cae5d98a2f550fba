package audit

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	heed, envoy, grpc, aws := &builtin[0], &builtin[1], &builtin[2], &builtin[3]
	ok := func(attempt, declared int64) mark { return mark{state: valid, attempt: attempt, declared: declared} }
	bad := mark{state: malformed}
	for _, c := range []struct {
		l      *layer
		values []string
		want   mark
	}{
		{heed, []string{"2"}, ok(2, 0)},
		{heed, []string{"1"}, ok(1, 0)}, // heed sends no marker on a first attempt, but 1 means one
		{heed, []string{"1000"}, ok(1000, 0)},
		{heed, []string{"1001"}, bad},
		{heed, []string{"1000000000000"}, bad},
		{heed, []string{"99999999999999999999999"}, bad},
		{heed, []string{"0"}, bad},
		{heed, []string{"-1"}, bad},
		{heed, []string{"+2"}, bad},
		{heed, []string{" 2"}, bad},
		{heed, []string{"2.0"}, bad},
		{heed, []string{"0x10"}, bad},
		{heed, []string{"two"}, bad},
		{heed, []string{""}, bad},
		{heed, []string{"2, 3"}, bad},
		{heed, []string{"2", "3"}, bad}, // repeated: which one?
		{heed, []string{"2", "2"}, bad},
		{envoy, []string{"1"}, ok(1, 0)},
		{envoy, []string{"2"}, ok(2, 0)},
		{envoy, []string{"0"}, bad},
		{envoy, []string{"-3"}, bad},
		{envoy, []string{"1000000000000"}, bad},
		{grpc, []string{"0"}, ok(1, 0)},
		{grpc, []string{"1"}, ok(2, 0)},
		{grpc, []string{"4"}, ok(5, 0)},
		{grpc, []string{"999"}, ok(1000, 0)},
		{grpc, []string{"1000"}, bad},
		{grpc, []string{"-1"}, bad},
		{grpc, []string{"1000000000000"}, bad},
		{aws, []string{"attempt=1; max=3"}, ok(1, 3)},
		{aws, []string{"attempt=2; max=3"}, ok(2, 3)},
		{aws, []string{"attempt=3;max=3"}, ok(3, 3)},
		{aws, []string{"max=5; attempt=2"}, ok(2, 5)},
		{aws, []string{"ttl=20240101T000000Z; attempt=2; max=3"}, ok(2, 3)},
		{aws, []string{"attempt=2"}, ok(2, 0)},
		{aws, []string{";;attempt=2;;"}, ok(2, 0)},
		{aws, []string{"ATTEMPT=2; Max=4"}, ok(2, 4)},
		{aws, []string{" attempt = 2 ; max = 4 "}, ok(2, 4)},
		{aws, []string{"attempt=4; max=3"}, bad}, // past its own max
		{aws, []string{"attempt=0; max=3"}, bad},
		{aws, []string{"attempt=-1; max=3"}, bad},
		{aws, []string{"attempt=1000000000000; max=3"}, bad},
		{aws, []string{"attempt=2; max=1000000000000"}, bad},
		{aws, []string{"attempt=2; max=-3"}, bad},
		{aws, []string{"attempt=2; attempt=3"}, bad},
		{aws, []string{"attempt=2; max=3; max=4"}, bad},
		{aws, []string{"attempt=; max=3"}, bad},
		{aws, []string{"max=3"}, bad},
		{aws, []string{"attempt"}, bad},
		{aws, []string{"garbage"}, bad},
		{aws, []string{""}, bad},
		{aws, []string{"attempt=1; max=3", "attempt=2; max=3"}, bad},
	} {
		if got := c.l.parse(c.values); got != c.want {
			t.Errorf("%s %q: got %+v, want %+v", c.l.name, c.values, got, c.want)
		}
	}
}

// Whatever a header holds, parsing neither panics nor yields an attempt or
// a declared maximum out of range.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"2", "0", "-1", "1000000000000", "attempt=2; max=3", "attempt=9;max=1", ";=;", "attempt==2", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for i := range builtin {
			m := builtin[i].parse([]string{v})
			switch m.state {
			case valid:
				if m.attempt < 1 || m.attempt > MaxAttempt || m.declared < 0 || m.declared > MaxAttempt || m.declared != 0 && m.declared < m.attempt {
					t.Fatalf("%s %q: %+v", builtin[i].name, v, m)
				}
			case malformed:
			default:
				t.Fatalf("%s %q: state %d", builtin[i].name, v, m.state)
			}
		}
	})
}

func TestNumber(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "7": 7, "000000012": 12, "999999999": 999999999} {
		if n, ok := number(s); !ok || n != want {
			t.Errorf("number(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "1000000000", "1a", "-1", "+1", " 1", "١"} {
		if n, ok := number(s); ok {
			t.Errorf("number(%q) = %d, true", s, n)
		}
	}
}

func TestMulSat(t *testing.T) {
	p := int64(1)
	for range 8 {
		p = mulSat(p, MaxAttempt)
	}
	if p != 1<<62 {
		t.Errorf("1000^8 = %d, want the saturation %d", p, int64(1<<62))
	}
	if got := mulSat(1<<62, 2); got != 1<<62 {
		t.Errorf("mulSat(2^62, 2) = %d", got)
	}
	if got := mulSat(3, 2); got != 6 {
		t.Errorf("mulSat(3, 2) = %d", got)
	}
}

func TestLayersValidation(t *testing.T) {
	for _, c := range []struct {
		markers []Marker
		want    string
	}{
		{[]Marker{{Layer: "", Header: "X-A"}}, "want 1 to 32"},
		{[]Marker{{Layer: "Own", Header: "X-A"}}, "want 1 to 32"},
		{[]Marker{{Layer: strings.Repeat("a", 33), Header: "X-A"}}, "want 1 to 32"},
		{[]Marker{{Layer: "own"}}, "no header"},
		{[]Marker{{Layer: "heed", Header: "X-A"}}, "taken"},
		{[]Marker{{Layer: "own", Header: "x-envoy-attempt-count"}}, "read by layer \"envoy\""},
		{[]Marker{{Layer: "a", Header: "X-A"}, {Layer: "a", Header: "X-B"}}, "taken"},
		{[]Marker{{Layer: "a", Header: "X-A"}, {Layer: "b", Header: "x-a"}}, "read by layer \"a\""},
		{[]Marker{{Layer: "a", Header: "X-A"}, {Layer: "b", Header: "X-B"}, {Layer: "c", Header: "X-C"}, {Layer: "d", Header: "X-D"}, {Layer: "e", Header: "X-E"}}, "at most 4"},
	} {
		_, err := layers(c.markers)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.markers, err, c.want)
		}
	}
	ls, err := layers([]Marker{{Layer: "own_loop", Header: "x-own-attempt", Previous: true}})
	if err != nil || len(ls) != 5 || ls[4] != (layer{"own_loop", "X-Own-Attempt", kindPrevious}) {
		t.Errorf("layers = %+v, %v", ls, err)
	}
}
