// Package heedprom exports heed's events and per-key state as Prometheus
// metrics.
package heedprom
