package heedredis

import (
	"fmt"

	"github.com/heed-go/heed"
	"github.com/heed-go/heed/budget"
)

// KeyLimits returns, for heed.WithKeyLimits, a rate limit per key (the
// host, by default) shared by the fleet: rate requests a second with the
// given burst. Each instance keeps its own adaptive pacer beside it (the
// limit already spaces the fleet); KeyPacing shares the pace instead, for
// an API whose limit is not known.
func (s *Store) KeyLimits(rate float64, burst int) (func(key string) heed.Limits, error) {
	if err := checkRate(rate, burst); err != nil {
		return nil, err
	}
	return func(key string) heed.Limits {
		l, _ := s.Limiter(key, rate, burst) // rate and burst were checked above
		return heed.Limits{Limiter: l}
	}, nil
}

// Budgets returns, for heed.WithRetryBudget, a retry budget per key shared
// by the fleet; the zero RatioConfig means heed's default.
func (s *Store) Budgets(c budget.RatioConfig) (budget.Maker, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("heedredis: %w", err)
	}
	return budget.MakerFunc(func(key string) (budget.Budget, error) {
		b, err := s.Budget(key, c)
		if err != nil {
			return nil, err
		}
		return b, nil
	}), nil
}
