//! Fills over `cache.max_object` (chunked responses: pingora does not enforce the limit
//! for them) pass through: every attached reader gets every byte, `finish` succeeds, nothing
//! is stored, new lookups miss, and the fill frees what its readers consumed.

use super::*;
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::MissFinishType;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const PIECE: usize = 64 * KIB;

fn storage(memory: u64, max_object: u64) -> &'static Storage {
    let mut s = Storage::with_memory(memory, false);
    s.max_object = max_object;
    Box::leak(Box::new(s))
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8 ^ (i >> 16) as u8).collect()
}

/// Reads whatever is readable now, without waiting.
fn drain(h: &mut HitHandler, into: &mut Vec<u8>) {
    while let Some(r) = h.read_body().now_or_never() {
        match r.unwrap() {
            Some(b) => into.extend_from_slice(&b),
            None => break,
        }
    }
}

fn fill_of(s: &'static Storage, tag: &[u8]) -> Arc<Fill> {
    let id = u64::from(U64WriteId::try_from(tag).unwrap());
    s.fills.by_id(id).unwrap()
}

#[tokio::test]
async fn an_oversized_fill_streams_every_byte_to_its_readers_and_is_not_stored() {
    let max_object = 4 * MIB;
    let s = storage(64 << 20, max_object as u64);
    let k = key("http://a.test/huge");
    let data = body(max_object + MIB);
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let tag = w.streaming_write_tag().unwrap().to_vec();
    let (_, mut own) = s
        .lookup_streaming_write(&k, Some(&tag), &span())
        .await
        .unwrap()
        .unwrap();
    let (_, mut waiter) = s.lookup(&k, &span()).await.unwrap().unwrap();
    let fill = fill_of(s, &tag);

    let (mut got_own, mut got_waiter) = (Vec::new(), Vec::new());
    let mut max_retained_passing = 0;
    for (i, piece) in data.chunks(PIECE).enumerate() {
        // Never an error because of size: pingora would fail the client request.
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
        if fill.passing() {
            max_retained_passing = max_retained_passing.max(fill.retained_bytes());
        }
        drain(&mut own, &mut got_own);
        drain(&mut waiter, &mut got_waiter);
        if (i + 1) * PIECE > max_object {
            assert!(fill.passing(), "over max_object after piece {i}");
            assert!(
                s.lookup(&k, &span()).await.unwrap().is_none(),
                "new lookups do not join a pass-through fill"
            );
            assert!(fill.attach().is_none(), "its start is gone");
            assert_eq!(fill.retained_bytes(), 0, "consumed pieces are released");
        } else {
            assert!(!fill.passing());
        }
    }
    assert!(
        max_retained_passing <= max_object + PIECE,
        "{max_retained_passing}"
    );
    let done = w.finish().await.unwrap();
    assert!(matches!(done, MissFinishType::Created(0)));
    got_own.extend(read_all(&mut own).await.unwrap());
    got_waiter.extend(read_all(&mut waiter).await.unwrap());
    for got in [&got_own, &got_waiter] {
        assert_eq!(got.len(), data.len());
        assert_eq!(crc32fast::hash(got), crc32fast::hash(&data));
    }
    assert_eq!(fill.retained_bytes(), 0);
    assert!(s.lookup(&k, &span()).await.unwrap().is_none(), "not stored");
    s.sync().await;
    assert_eq!(s.stats().memory.objects, 0);
    // A later fill of the same key within the limit is stored as usual.
    put(s, "http://a.test/huge", &[], b"small").await;
    assert_eq!(get(s, "http://a.test/huge").await.unwrap(), b"small");
}

#[tokio::test]
async fn a_slow_reader_keeps_only_its_backlog_and_a_dropped_one_nothing() {
    let max_object = MIB;
    let s = storage(64 << 20, max_object as u64);
    let k = key("http://a.test/slow");
    let data = body(4 * MIB);
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let tag = w.streaming_write_tag().unwrap().to_vec();
    let (_, mut own) = s
        .lookup_streaming_write(&k, Some(&tag), &span())
        .await
        .unwrap()
        .unwrap();
    let (_, mut slow) = s.lookup(&k, &span()).await.unwrap().unwrap();
    let (_, gone) = s.lookup(&k, &span()).await.unwrap().unwrap();
    let fill = fill_of(s, &tag);
    drop(gone); // a client that went away pins nothing

    let (mut got_own, mut got_slow) = (Vec::new(), Vec::new());
    let pieces: Vec<&[u8]> = data.chunks(PIECE).collect();
    for (i, piece) in pieces.iter().enumerate() {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
        drain(&mut own, &mut got_own);
        if i % 4 == 3 {
            // The slow reader reads one piece for every four written.
            got_slow.extend_from_slice(&slow.read_body().await.unwrap().unwrap());
        }
        if fill.passing() {
            let backlog = got_own.len() - got_slow.len();
            assert!(
                fill.retained_bytes() <= backlog + PIECE,
                "retained {} > backlog {backlog}",
                fill.retained_bytes()
            );
        }
    }
    w.finish().await.unwrap();
    got_own.extend(read_all(&mut own).await.unwrap());
    got_slow.extend(read_all(&mut slow).await.unwrap());
    assert!(got_own == data && got_slow == data);
    assert_eq!(fill.retained_bytes(), 0);
    drop((own, slow));
    assert!(s.lookup(&k, &span()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_fill_with_no_reader_left_holds_nothing_and_finishes() {
    let s = storage(64 << 20, MIB as u64);
    let k = key("http://a.test/orphan");
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let tag = w.streaming_write_tag().unwrap().to_vec();
    let fill = fill_of(s, &tag);
    for piece in body(2 * MIB).chunks(PIECE) {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
    }
    assert!(fill.passing());
    assert_eq!(fill.retained_bytes(), 0);
    w.finish().await.unwrap();
    assert!(s.lookup(&k, &span()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_body_at_exactly_max_object_is_stored() {
    let s = storage(64 << 20, MIB as u64);
    let data = body(MIB);
    let chunks: Vec<&[u8]> = data.chunks(PIECE).collect();
    put_key(s, &key("http://a.test/exact"), &[], &chunks).await;
    assert!(get(s, "http://a.test/exact").await.unwrap() == data);
}
