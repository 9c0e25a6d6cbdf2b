package experiments

import "log/slog"

func auditLevel(result string) slog.Level {
	if result == "ok" {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

func slogAttrs(e AuditEntry) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("audit_id", e.ID), slog.String("key_id", e.KeyID), slog.String("action", e.Action),
		slog.String("target", e.Target), slog.String("result", e.Result),
	}
	if e.Error != "" {
		attrs = append(attrs, slog.String("error", e.Error))
	}
	if e.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", e.RequestID))
	}
	return attrs
}
