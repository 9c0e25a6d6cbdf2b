package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// bucket is a prefix of one S3 bucket.
type bucket struct {
	c      *minio.Client
	name   string
	prefix string
	stall  time.Duration // Config.Stall
}

func openBucket(ctx context.Context, cfg Config) (*bucket, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, secure := cfg.Endpoint, true
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint %q: want host:port or http(s)://host:port", ErrConfig, cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	opts := &minio.Options{Secure: secure, Region: cfg.Region, MaxRetries: 1}
	if cfg.AccessKey != "" {
		opts.Creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		opts.Creds = credentials.New(&credentials.Static{})
	}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	}
	c, err := minio.New(host, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	b := &bucket{c: c, name: cfg.Bucket, prefix: cfg.Prefix, stall: cfg.Stall}
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// check reports whether the bucket exists and answers.
func (b *bucket) check(ctx context.Context) error {
	ctx, _, stop := b.watch(ctx)
	ok, err := b.c.BucketExists(ctx, b.name)
	err = stop(err)
	if err != nil {
		switch r := minio.ToErrorResponse(err); {
		case r.Code == "NoSuchBucket":
			return fmt.Errorf("%w: %s", ErrNoBucket, b.name)
		case r.StatusCode == 403 || r.Code == "AccessDenied" || r.Code == "InvalidAccessKeyId" || r.Code == "SignatureDoesNotMatch":
			return fmt.Errorf("%w: bucket %s: %w (check the credentials)", ErrAccessDenied, b.name, err)
		}
		if minio.ToErrorResponse(err).StatusCode == 0 {
			return fmt.Errorf("%w: %s: %w", ErrUnreachable, b.c.EndpointURL().Host, err)
		}
		return fmt.Errorf("bucket %s: %w", b.name, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoBucket, b.name)
	}
	return nil
}

func (b *bucket) key(parts ...string) string {
	return path.Join(append([]string{b.prefix}, parts...)...)
}

// size returns the size of the object under key, or -1 when there is none.
func (b *bucket) size(ctx context.Context, key string) (int64, error) {
	ctx, _, stop := b.watch(ctx)
	info, err := b.c.StatObject(ctx, b.name, key, minio.StatObjectOptions{})
	if err = stop(err); err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" || r.StatusCode == 404 {
			return -1, nil
		}
		return 0, err
	}
	return info.Size, nil
}

func (b *bucket) putFile(ctx context.Context, key, file string) error {
	_, err := b.c.FPutObject(ctx, b.name, key, file, minio.PutObjectOptions{})
	return err
}

func (b *bucket) put(ctx context.Context, key string, r io.Reader, size int64) error {
	_, err := b.c.PutObject(ctx, b.name, key, r, size, minio.PutObjectOptions{ContentType: "application/json"})
	return err
}

// putNew puts an object only if there is none under key (If-None-Match:
// *); errExists if there is one.
func (b *bucket) putNew(ctx context.Context, key string, r io.Reader, size int64) error {
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	opts.SetMatchETagExcept("*")
	_, err := b.c.PutObject(ctx, b.name, key, r, size, opts)
	if r := minio.ToErrorResponse(err); r.StatusCode == 412 || r.Code == "PreconditionFailed" {
		return errExists
	}
	return err
}

// getFile downloads the object under key into a new file, synced, and
// checks that it has size bytes.
func (b *bucket) getFile(ctx context.Context, key, file string, size int64) (err error) {
	ctx, kick, stop := b.watch(ctx)
	defer func() { err = stop(err) }()
	o, err := b.c.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer o.Close()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(f, progress{o, kick})
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: %d bytes, the generation record says %d", key, n, size)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// progress calls kick on every read that returns bytes.
type progress struct {
	r    io.Reader
	kick func()
}

func (p progress) Read(buf []byte) (int, error) {
	n, err := p.r.Read(buf)
	if n > 0 {
		p.kick()
	}
	return n, err
}

// watch returns a context that is cancelled when b.stall passes without
// a call of kick (every request made with it waits for bytes from the
// object store), and stop, which releases it and turns an error the
// stall caused into ErrStalled.
func (b *bucket) watch(ctx context.Context) (_ context.Context, kick func(), stop func(error) error) {
	if b.stall <= 0 {
		return ctx, func() {}, func(err error) error { return err }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(b.stall, func() { cancel(ErrStalled) })
	return ctx, func() { t.Reset(b.stall) }, func(err error) error {
		t.Stop()
		if err != nil && errors.Is(context.Cause(ctx), ErrStalled) {
			err = fmt.Errorf("%w: no byte from %s for %v", ErrStalled, b.c.EndpointURL().Host, b.stall)
		}
		cancel(nil)
		return err
	}
}

// get returns the object under key; errNoKey when there is none.
func (b *bucket) get(ctx context.Context, key string) (_ []byte, err error) {
	ctx, kick, stop := b.watch(ctx)
	defer func() { err = stop(err) }()
	o, err := b.c.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	data, err := io.ReadAll(progress{o, kick})
	if err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" || r.StatusCode == 404 {
			return nil, errNoKey
		}
		return nil, err
	}
	return data, nil
}

var (
	errNoKey  = errors.New("no such key")
	errExists = errors.New("key exists")
)
