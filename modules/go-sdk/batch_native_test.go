//go:build !wasip1

package guest

import (
	"encoding/binary"
	"testing"
)

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

func TestDeliverBatchHandsEachMessageOverInOrderAndMarksProgress(t *testing.T) {
	batch := EncodeBatch([]Message{
		{Topic: "a.1", Kind: KindEvent, Payload: []byte("1")},
		{Topic: "a.2", Kind: KindRequest, ID: 9},
		{Topic: "a.3", Kind: KindEvent},
	})
	var seen []string
	var progress []uint64
	err := deliverBatch(batch, func(m Message) {
		progress = append(progress, binary.LittleEndian.Uint64(batch[:8]))
		seen = append(seen, m.Topic)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0] != "a.1" || seen[2] != "a.3" {
		t.Fatalf("handled %v", seen)
	}
	if progress[0] != 0 || progress[1] != 1 || progress[2] != 2 {
		t.Fatalf("the count field held %v while the handlers ran", progress)
	}

	// A truncated batch: what decodes is handled, then the error.
	broken := EncodeBatch([]Message{{Topic: "b.1"}, {Topic: "b.2", Payload: []byte("xy")}})
	seen = nil
	err = deliverBatch(broken[:len(broken)-1], func(m Message) { seen = append(seen, m.Topic) })
	if err == nil || len(seen) != 1 {
		t.Fatalf("handled %v, error %v", seen, err)
	}
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<40)
	if err := deliverBatch(huge, func(Message) { t.Fatal("nothing to handle") }); err == nil {
		t.Fatal("a count the bytes cannot hold must be refused")
	}
	if err := deliverBatch([]byte{1}, func(Message) {}); err == nil {
		t.Fatal("a batch without its count must be refused")
	}
}
