//! What handing out a private room's key costs the key leader: one wrap, one unwrap (what
//! each member pays), and a whole rotation, one secret wrapped to N = 100, 1,000 and 5,000
//! members. The bytes one rotation puts on the wire (sealed blobs only, before any framing
//! or base64) are printed once per N to stderr.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use hallway::e2e::wrap::{
    KeyContext, KeyPayload, Wrapper, new_secret, roster_digest, unwrap, wrap,
};
use hallway::identity::DeviceKey;

const ROOM: &str = "town hall";
const EPOCH: u32 = 42;
const LEADER: u32 = 1;

/// Wraps one payload to every member, as the leader does at each rotation (with its key
/// made ready once, as the key agent keeps it).
fn rotate(
    leader_secret: &[u8; 32],
    members: &[(u32, [u8; 32])],
    payload: &KeyPayload,
) -> Vec<Vec<u8>> {
    let wrapper = Wrapper::new(leader_secret).unwrap();
    members
        .iter()
        .map(|&(user, agree)| {
            let context = KeyContext {
                room: ROOM,
                epoch: EPOCH,
                sender: LEADER,
                recipient: user,
            };
            wrapper.wrap(&agree, &context, payload).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let leader = DeviceKey::generate();
    let leader_secret = leader.agree_secret();
    let member = DeviceKey::generate();
    let context = KeyContext {
        room: ROOM,
        epoch: EPOCH,
        sender: LEADER,
        recipient: 2,
    };
    let payload = KeyPayload {
        secret: new_secret(),
        roster: [7; 32],
        r#gen: 0,
    };

    c.bench_function("e2e_wrap_one", |b| {
        b.iter(|| {
            black_box(
                wrap(
                    &leader_secret,
                    &member.public().agree,
                    &context,
                    black_box(&payload),
                )
                .unwrap(),
            )
        })
    });

    let sealed = wrap(&leader_secret, &member.public().agree, &context, &payload).unwrap();
    let member_secret = member.agree_secret();
    let leader_public = leader.public().agree;
    c.bench_function("e2e_unwrap_one", |b| {
        b.iter(|| {
            black_box(unwrap(&member_secret, &leader_public, &context, black_box(&sealed)).unwrap())
        })
    });

    // Members' device keys, made once for the largest N; smaller rotations take a prefix.
    let sizes = [100usize, 1_000, 5_000];
    let largest = *sizes.last().unwrap();
    let members: Vec<(u32, [u8; 32])> = (0..largest)
        .map(|i| (LEADER + 1 + i as u32, DeviceKey::generate().public().agree))
        .collect();

    let mut group = c.benchmark_group("e2e_rotation");
    // A rotation to 5,000 takes about a second: ten samples of one rotation each (flat
    // sampling) keep the whole bench to well under a minute.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for n in sizes {
        let members = &members[..n];
        let payload = KeyPayload {
            roster: roster_digest(ROOM, EPOCH, members),
            ..payload.clone()
        };
        let started = Instant::now();
        let bytes: usize = rotate(&leader_secret, members, &payload)
            .iter()
            .map(Vec::len)
            .sum();
        // Large rotations get one rotation per sample and no more (for 5,000 criterion
        // then warns that ten samples do not fit; that is expected), small ones 2 s.
        group.measurement_time((started.elapsed() * 8).max(Duration::from_secs(2)));
        eprintln!(
            "e2e_rotation/{n}: {bytes} bytes of wrapped keys ({} per member)",
            bytes / n
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), members, |b, members| {
            b.iter(|| black_box(rotate(&leader_secret, members, &payload)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Plots would double the run time and the numbers are what docs quote.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots();
    targets = bench
}
criterion_main!(benches);
