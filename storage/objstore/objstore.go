// Package objstore is the object storage tier: it uploads consistent
// checkpoints of the data directory's pebble databases (the branch store and
// the control database) to an S3-compatible bucket, and restores a data
// directory from the last complete upload.
//
// Every Interval the Uploader asks each Source whether it committed
// anything since the last complete round (Source.Version); if none did,
// the round uploads nothing. Otherwise it asks each Source for a
// checkpoint into a staging directory (storage/checkpoint: the memtable
// flushed, then hard links to the immutable sstables and blob files and
// copies of the MANIFEST and OPTIONS, no WAL). Immutable files are uploaded
// once, under their own name; the small mutable ones (MANIFEST, markers)
// under their name and content hash, so an unchanged one is not sent
// again. A round whose files all match the last generation's writes none. Once every file of a round is in the
// bucket, a generation record listing them is written, then "latest". A
// round is therefore the unit of recovery: the recovery point (RPO) is the
// Interval plus the time a round takes, and a crash mid-round leaves the
// previous generation intact. Files already in the bucket (by name and
// size) are not sent again after a restart.
package objstore

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Errors returned by this package.
var (
	// ErrConfig means the configuration is incomplete or malformed.
	ErrConfig = errors.New("object store configuration")
	// ErrNoBucket means the bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrUnreachable means the endpoint did not answer.
	ErrUnreachable = errors.New("object store unreachable")
	// ErrAccessDenied means the endpoint refused the credentials.
	ErrAccessDenied = errors.New("object store access denied")
	// ErrNoBackup means the bucket and prefix hold no complete upload.
	ErrNoBackup = errors.New("no upload found under the prefix")
	// ErrNoGeneration means the bucket holds no generation that a
	// restore's choice (a number, a time) names.
	ErrNoGeneration = errors.New("no such generation")
	// ErrNotEmpty means a restore was pointed at a non-empty directory.
	ErrNotEmpty = errors.New("data dir is not empty")
	// ErrRestoreUnfinished means a data dir holds a restore that has not
	// completed (it was interrupted, or is still running): nothing may
	// serve on it; restoring into it again replaces it.
	ErrRestoreUnfinished = errors.New("data dir holds an unfinished restore")
	// ErrStalled means a request to the object store made no progress
	// for Config.Stall.
	ErrStalled = errors.New("object store request stalled")
	// ErrPrefixTaken means the prefix holds a generation newer than this
	// data dir's last, uploaded by another data dir (a restore of the
	// prefix, or a second server): uploading would overwrite its history,
	// so the uploader refuses.
	ErrPrefixTaken = errors.New("another data dir uploads to the prefix")
)

// DefaultInterval is the default time between upload rounds.
const DefaultInterval = 10 * time.Second

// Config names an S3-compatible bucket and how to reach it.
type Config struct {
	// Endpoint is host:port or a URL; http:// means no TLS. Required.
	Endpoint string
	// Bucket must exist. Required.
	Bucket string
	// Prefix is prepended to every key ("" for the bucket's root).
	Prefix string
	// AccessKey and SecretKey sign requests; both empty means anonymous.
	AccessKey, SecretKey string
	// Region is sent in signatures. Default us-east-1.
	Region string
	// PathStyle addresses the bucket in the path (http://host/bucket/key)
	// instead of the host name. Default false (virtual-host style where
	// the endpoint supports it).
	PathStyle bool
	// Interval is the time between upload rounds, and with the round's own
	// duration the recovery point. Default DefaultInterval.
	Interval time.Duration
	// Keep is how long past generations stay restorable (see
	// retention.go): every one of the last KeepAll, then the newest of
	// each hour. Objects only dropped generations named are deleted.
	// Default 0: every generation is kept and nothing is deleted.
	Keep time.Duration
	// KeepAll is the recent window in which every generation is kept.
	// Default 1 h (at most Keep).
	KeepAll time.Duration
	// Stall is how long a request that reads from the object store (the
	// bucket check, a listing, a record, each file a restore downloads)
	// may go without receiving a byte before it fails (ErrStalled), so
	// that a hung object store fails a restore instead of hanging it.
	// Uploads are not bounded by it. Default DefaultStall.
	Stall time.Duration
}

// DefaultStall is the default Config.Stall.
const DefaultStall = time.Minute

func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.KeepAll <= 0 {
		c.KeepAll = time.Hour
	}
	if c.Stall <= 0 {
		c.Stall = DefaultStall
	}
	if c.Keep > 0 {
		c.KeepAll = min(c.KeepAll, c.Keep)
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	return c
}

func (c Config) validate() error {
	if c.Endpoint == "" {
		return fmt.Errorf("%w: no endpoint", ErrConfig)
	}
	if c.Bucket == "" {
		return fmt.Errorf("%w: no bucket", ErrConfig)
	}
	if c.Keep < 0 {
		return fmt.Errorf("%w: keep %v: want 0 (keep every generation) or a duration", ErrConfig, c.Keep)
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return fmt.Errorf("%w: access key and secret key must be given together", ErrConfig)
	}
	return nil
}

// ParseURL splits s3://bucket/prefix into bucket and prefix.
func ParseURL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("%w: %q is not s3://bucket[/prefix]", ErrConfig, s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// LoadCredentials fills AccessKey and SecretKey when both are empty: from
// OFFSHOOT_S3_ACCESS_KEY and OFFSHOOT_S3_SECRET_KEY, else
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else the file named by
// OFFSHOOT_S3_CREDENTIALS_FILE (lines access_key=... and secret_key=...).
func (c *Config) LoadCredentials() error {
	if c.AccessKey != "" || c.SecretKey != "" {
		return nil
	}
	for _, p := range [][2]string{{"OFFSHOOT_S3_ACCESS_KEY", "OFFSHOOT_S3_SECRET_KEY"}, {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}} {
		if a, s := os.Getenv(p[0]), os.Getenv(p[1]); a != "" || s != "" {
			c.AccessKey, c.SecretKey = a, s
			return nil
		}
	}
	f := os.Getenv("OFFSHOOT_S3_CREDENTIALS_FILE")
	if f == "" {
		return nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("%w: credentials file: %w", ErrConfig, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "access_key":
			c.AccessKey = strings.TrimSpace(v)
		case "secret_key":
			c.SecretKey = strings.TrimSpace(v)
		}
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return fmt.Errorf("%w: credentials file %s needs access_key= and secret_key= lines", ErrConfig, f)
	}
	return nil
}
