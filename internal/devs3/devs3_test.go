package devs3

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
)

func TestIntegrationBucketRoundTripAndWebhook(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := testenv.Context(t)

	// The receiver must be up before MinIO starts.
	keys := make(chan string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Records []struct {
				EventName string `json:"eventName"`
				S3        struct {
					Object struct {
						Key string `json:"key"`
					} `json:"object"`
				} `json:"s3"`
			} `json:"Records"`
		}
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &ev) == nil {
			for _, rec := range ev.Records {
				keys <- rec.EventName + " " + rec.S3.Object.Key
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()

	srv, err := Start(ctx, Options{Dir: t.TempDir(), WebhookEndpoints: map[string]string{"REC": hook.URL + "/events"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	testenv.LogOnFailure(t, "minio", func() string { return srv.LogTail(8000) })

	if err := srv.CreateBucket(ctx, "recordings"); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddWebhook(ctx, "recordings", "REC"); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddWebhook(ctx, "recordings", "NOPE"); err == nil {
		t.Error("AddWebhook accepted an unconfigured target")
	}
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("recording "), 1000)
	if _, err := c.PutObject(ctx, "recordings", "calls/1/audio.ogg", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "audio/ogg"}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, "recordings", "calls/1/audio.ogg", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("object read back differs")
	}
	select {
	case got := <-keys:
		t.Logf("webhook event: %s", got)
		if got != "s3:ObjectCreated:Put calls%2F1%2Faudio.ogg" {
			t.Fatalf("webhook event %q", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no webhook event within 15 s")
	}
}
