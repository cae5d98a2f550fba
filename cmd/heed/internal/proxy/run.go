package proxy

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Run serves cfg until ctx ends or the process gets SIGTERM or SIGINT,
// then shuts down gracefully. On SIGHUP it reloads the configuration from
// configPath (when not empty); a configuration that fails to load is
// logged and the one in force kept. override, if not nil, is applied to
// every configuration loaded, the first and each reload: the command
// line's settings win over the file's every time.
func Run(ctx context.Context, cfg *Config, configPath string, override func(*Config), logger *slog.Logger) error {
	if override != nil {
		override(cfg)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	s, err := Start(cfg, logger)
	if err != nil {
		return err
	}
	logger.Info("ready", "routes", len(cfg.Routes), "admin", cfg.Admin)
	for {
		select {
		case <-ctx.Done():
			s.Shutdown()
			return nil
		case v := <-sig:
			if v != syscall.SIGHUP {
				logger.Info("signal", "signal", v.String())
				s.Shutdown()
				return nil
			}
			if configPath == "" {
				logger.Warn("SIGHUP ignored: the routes come from flags, not a configuration file")
				continue
			}
			next, err := Load(configPath)
			if err != nil {
				logger.Error("reload refused: keeping the configuration in force", "err", err.Error())
				continue
			}
			if override != nil {
				override(next)
			}
			if err := s.Reload(next); err != nil {
				logger.Error("reload failed: keeping the configuration in force", "err", err.Error())
			}
		}
	}
}
