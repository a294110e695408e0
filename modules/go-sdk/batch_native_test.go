//go:build !wasip1

package guest

import "testing"

func TestPublishBatchRecordsEveryMessageInOrder(t *testing.T) {
	TakePublished()
	batch := []Message{
		{Topic: "a.b", Kind: KindEvent, Payload: []byte("1")},
		{Topic: "c", Kind: KindRequest, ID: 9},
	}
	n, err := PublishBatch(batch, 0)
	if n != 2 || err != nil {
		t.Fatalf("PublishBatch: %d %v", n, err)
	}
	if got := TakePublished(); len(got) != 2 || got[0].Topic != "a.b" || got[1].ID != 9 {
		t.Fatalf("recorded %+v", got)
	}
	if sysPublishBatch([]byte{1, 0, 0, 0, 0, 0, 0, 0, 9}, 0) != int32(CodeInvalid) {
		t.Fatal("a truncated batch must be refused")
	}
}
