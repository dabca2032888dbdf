//! Which devices of a worker a request gets, and how much a placement fragments a pool's
//! GPUs.
//!
//! A worker's devices are seen as [`DeviceSlot`]s: the healthy devices with their free
//! milli-GPUs (an unhealthy device is never booked, so it has no slot). [`choose`] picks
//! the devices for a [`GpuAsk`]: whole GPUs take devices that are wholly free; a fraction
//! takes one device with room for it, the fullest such device first (best fit), so whole
//! devices stay whole for whole-GPU requests.
//!
//! [`fragmentation`] measures, as FGD does (Weng et al., "Beware of Fragmentation",
//! USENIX ATC '23; the definition read from its simulator,
//! github.com/hkust-adsl/kubernetes-scheduler-simulator, `NodeGpuShareFragAmount`), how
//! much of a worker's free GPU capacity the expected GPU demand could not use: for each
//! shape of that demand, weighted by how common it is, the free milli-GPUs it cannot use
//! on this worker. A shape that does not accept the worker's GPU type, does not fit its
//! free CPU or memory, or cannot get its GPUs, can use none of them (all are a fragment
//! to it); otherwise a fraction cannot use devices with less free than it asks, and whole
//! GPUs cannot use partly booked devices. The fragmentation-aware policy places every request, CPU-only ones included,
//! where this measure grows least (FGD's "gradient descent"), trying each distinct device
//! a fraction could take.
//!
//! Shapes that accept only some GPU types are weighed by how scarce those types are
//! ([`weighed_by_scarcity`]): a shape's count is multiplied by the GPUs of the workers the
//! policy places on over the GPUs of the types it accepts (rounded to the nearest, at most
//! [`MAX_SCARCITY`] times). The paper weighs shapes by popularity alone. With types, that
//! makes the rarest type the cheapest home for a request that takes any: nearly every
//! typed shape rejects it, so all its free GPUs count as their fragments, and any placement
//! there shrinks them. Its few devices then go to requests that could run anywhere, and
//! the requests that need them are refused (BENCHMARKS.md, GPU sharing, typed pods).
//! Weighed by scarcity, a shape that can use a tenth of those GPUs counts ten times for
//! each free GPU it cannot use. Where no shape names a type, the demand is used as given,
//! and every decision stays the paper's.
//!
//! Where this differs from the paper's simulator, on purpose: memory counts like CPU (the
//! simulator checks CPU alone, though its filter also needs memory); CPU-only shapes are
//! left out of the demand (to them every free milli-GPU is a fragment, which adds the same
//! amount to every placement of one request and so decides nothing); the growth is
//! compared exactly, where the simulator scores a sigmoid of it rounded to an integer and
//! breaks ties at random; ties here go to the fuller worker (pack). A shape's types are
//! those the request asks for now: a fallback step that later widens them (and a pool
//! selector) is not seen, so the measure may count a fallback type's GPUs as a fragment to
//! requests that could still take them.

use crate::{DeviceShare, GPU_MILLI, GpuPreference, GpuType, Resources};
use std::collections::BTreeMap;

/// What a request asks of GPU devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuAsk {
    /// No GPU.
    None,
    /// This many whole devices.
    Whole(u32),
    /// This many milli-GPUs (1 to 999) of one device.
    Fraction(u32),
}

impl GpuAsk {
    /// The ask's size in milli-GPUs.
    pub fn milli(self) -> u64 {
        match self {
            GpuAsk::None => 0,
            GpuAsk::Whole(n) => u64::from(n) * u64::from(GPU_MILLI),
            GpuAsk::Fraction(milli) => milli.into(),
        }
    }
}

/// One healthy device of a worker and its free milli-GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceSlot {
    /// The device's index on the worker.
    pub index: u32,
    /// Its free milli-GPUs, 0 to [`GPU_MILLI`].
    pub free: u32,
}

impl DeviceSlot {
    fn is_whole(&self) -> bool {
        self.free >= GPU_MILLI
    }
}

/// The devices `slots` would give `ask` (best fit for a fraction, lowest indices for whole
/// GPUs), or `None` when they cannot hold it. No GPU asked: no devices.
pub fn choose(slots: &[DeviceSlot], ask: GpuAsk) -> Option<Vec<DeviceShare>> {
    match ask {
        GpuAsk::None => Some(Vec::new()),
        GpuAsk::Whole(n) => {
            let whole: Vec<DeviceShare> = slots
                .iter()
                .filter(|slot| slot.is_whole())
                .take(usize::try_from(n).ok()?)
                .map(|slot| DeviceShare::whole(slot.index))
                .collect();
            (whole.len() == usize::try_from(n).ok()?).then_some(whole)
        }
        GpuAsk::Fraction(milli) => slots
            .iter()
            .filter(|slot| slot.free >= milli)
            .min_by_key(|slot| (slot.free, slot.index))
            .map(|slot| {
                vec![DeviceShare {
                    index: slot.index,
                    milli,
                }]
            }),
    }
}

/// Whether `slots` could give `ask`: [`choose`] would find devices (without building them,
/// since the fragmentation measure asks this for every demand shape of every placement
/// it weighs).
fn holds(slots: &[DeviceSlot], ask: GpuAsk) -> bool {
    match ask {
        GpuAsk::None => true,
        GpuAsk::Whole(n) => usize::try_from(n)
            .is_ok_and(|n| slots.iter().filter(|slot| slot.is_whole()).take(n).count() == n),
        GpuAsk::Fraction(milli) => slots.iter().any(|slot| slot.free >= milli),
    }
}

/// Every way `slots` could give `ask` that differs in what it leaves: for a fraction, one
/// choice per distinct free amount (the lowest index among equals), the fullest device
/// first, as [`choose`] prefers it (so that a tie between them keeps whole devices whole);
/// for whole GPUs, the single choice of [`choose`] (wholly free devices are alike).
pub fn alternatives(slots: &[DeviceSlot], ask: GpuAsk) -> Vec<Vec<DeviceShare>> {
    match ask {
        GpuAsk::Fraction(milli) => {
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for slot in slots.iter().filter(|slot| slot.free >= milli) {
                if !seen.contains(&slot.free) {
                    seen.push(slot.free);
                    out.push(vec![DeviceShare {
                        index: slot.index,
                        milli,
                    }]);
                }
            }
            out.sort_by_key(|shares| {
                slots
                    .iter()
                    .find(|slot| slot.index == shares[0].index)
                    .map_or(u32::MAX, |slot| slot.free)
            });
            out
        }
        _ => choose(slots, ask).into_iter().collect(),
    }
}

/// Takes `shares` from `slots`; false (and `slots` unchanged) when a share names no slot
/// or more than its slot has free.
pub fn take(slots: &mut [DeviceSlot], shares: &[DeviceShare]) -> bool {
    let mut next = slots.to_vec();
    for share in shares {
        let Some(slot) = next.iter_mut().find(|slot| slot.index == share.index) else {
            return false;
        };
        let Some(left) = slot.free.checked_sub(share.milli) else {
            return false;
        };
        slot.free = left;
    }
    slots.copy_from_slice(&next);
    true
}

/// How many wholly free devices of `slots` the fractions in `devices` break into: what a
/// placement takes from the worker's free GPU count beyond its whole GPUs.
pub fn wholes_broken(slots: &[DeviceSlot], devices: &[DeviceShare]) -> u32 {
    let broken = devices
        .iter()
        .filter(|share| !share.is_whole())
        .filter(|share| {
            slots
                .iter()
                .any(|slot| slot.index == share.index && slot.is_whole())
        })
        .count();
    u32::try_from(broken).unwrap_or(u32::MAX)
}

/// How many devices of `slots` are wholly free: the worker's free GPU count.
pub fn whole_free(slots: &[DeviceSlot]) -> u32 {
    let whole = slots.iter().filter(|slot| slot.is_whole()).count();
    u32::try_from(whole).unwrap_or(u32::MAX)
}

/// One shape of the expected GPU demand and how common it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DemandShape {
    /// Its CPU and memory (its GPU count is in `gpus`).
    pub resources: Resources,
    /// Its GPUs.
    pub gpus: GpuAsk,
    /// The GPU types it accepts (their order does not matter here): to a shape that does
    /// not accept a worker's type, all of that worker's free GPUs are a fragment.
    pub types: GpuPreference,
    /// Its weight: how many requests of this shape the demand holds.
    pub weight: u64,
}

/// The free milli-GPUs of `slots` (`total` of them) that `shape` could not use on a
/// worker with `free` CPU and memory and GPUs of `gpu_type` (see the module
/// documentation).
fn unusable(
    slots: &[DeviceSlot],
    total: u64,
    free: &Resources,
    gpu_type: Option<&GpuType>,
    shape: &DemandShape,
) -> u64 {
    // A worker of no type takes no GPU request (the rules refuse them all there).
    let accepted = match (&shape.types, gpu_type) {
        (_, None) => false,
        (GpuPreference::Any, Some(_)) => true,
        (GpuPreference::Types(types), Some(ty)) => types.contains(ty),
    };
    let fits = accepted
        && shape.resources.cpu_millicores <= free.cpu_millicores
        && shape.resources.memory_mib <= free.memory_mib
        && holds(slots, shape.gpus);
    if !fits {
        return total;
    }
    let usable = |slot: &DeviceSlot| match shape.gpus {
        GpuAsk::None => false,
        GpuAsk::Whole(_) => slot.is_whole(),
        GpuAsk::Fraction(milli) => slot.free >= milli,
    };
    slots
        .iter()
        .filter(|slot| !usable(slot))
        .map(|slot| u64::from(slot.free))
        .sum()
}

/// The fragmentation of a worker with GPUs of `gpu_type` for `demand`: the weighted sum
/// over its shapes of the free milli-GPUs each could not use (comparable between workers
/// for one demand; divide by the total weight for the expectation).
pub fn fragmentation(
    slots: &[DeviceSlot],
    free: &Resources,
    gpu_type: Option<&GpuType>,
    demand: &[DemandShape],
) -> u128 {
    let total: u64 = slots.iter().map(|slot| u64::from(slot.free)).sum();
    demand
        .iter()
        .map(|shape| {
            let lost = unusable(slots, total, free, gpu_type, shape);
            u128::from(shape.weight) * u128::from(lost)
        })
        .sum()
}

/// The most a shape's weight is multiplied by for the scarcity of the GPU types it accepts
/// (a type with less than 1/256 of the GPUs weighs as if it had that share). It bounds the
/// weighed growth of a placement: the planner scores growth up to 2^40 weighed milli-GPUs,
/// which on 8-GPU workers takes over half a million GPU requests at this cap (beyond it,
/// placements that grow fragmentation more tie, and pack decides among them).
pub const MAX_SCARCITY: u64 = 256;

/// `demand` with each shape's weight multiplied by the scarcity of the GPUs it accepts:
/// all the GPUs of `gpus_by_type` (the placeable GPUs, by type) over those of the types it
/// accepts, rounded to the nearest, at most [`MAX_SCARCITY`] (see the module
/// documentation). A shape that accepts none of them weighs nothing: it fits nowhere, so
/// it could only add the same amount to every placement of a request. The product is
/// taken before the division, so a shape that takes any type keeps exactly its weight.
pub fn weighed_by_scarcity(
    demand: &[DemandShape],
    gpus_by_type: &BTreeMap<GpuType, u64>,
) -> Vec<DemandShape> {
    let all: u64 = gpus_by_type.values().sum();
    demand
        .iter()
        .map(|shape| {
            let accepted: u64 = gpus_by_type
                .iter()
                .filter(|(ty, _)| shape.types.rank(ty).is_some())
                .map(|(_, gpus)| gpus)
                .sum();
            let weight = if accepted == 0 {
                0
            } else {
                // Rounded to the nearest: batch demands weigh 1 to 3, where rounding down
                // would drop the scarcity of a type with half the pool's GPUs.
                let scaled = (u128::from(shape.weight) * u128::from(all)
                    + u128::from(accepted) / 2)
                    / u128::from(accepted);
                let most = u128::from(shape.weight) * u128::from(MAX_SCARCITY);
                u64::try_from(scaled.min(most)).unwrap_or(u64::MAX)
            };
            DemandShape {
                weight,
                ..shape.clone()
            }
        })
        .collect()
}

/// The demand that `asks` (resources, GPUs, accepted GPU types) make, one shape per
/// distinct ask, weighted by count; requests without GPUs are left out (they use no GPU).
pub fn demand_of<'a>(
    asks: impl IntoIterator<Item = (&'a Resources, GpuAsk, &'a GpuPreference)>,
) -> Vec<DemandShape> {
    let mut shapes: Vec<DemandShape> = Vec::new();
    for (resources, gpus, types) in asks {
        if gpus == GpuAsk::None {
            continue;
        }
        // Lists naming the same types, in any order, are one shape here.
        let types = match types {
            GpuPreference::Any => GpuPreference::Any,
            GpuPreference::Types(list) => {
                let mut list = list.clone();
                list.sort();
                list.dedup();
                GpuPreference::Types(list)
            }
        };
        let resources = Resources::new(resources.cpu_millicores, resources.memory_mib, 0);
        match shapes
            .iter_mut()
            .find(|s| s.resources == resources && s.gpus == gpus && s.types == types)
        {
            Some(shape) => shape.weight += 1,
            None => shapes.push(DemandShape {
                resources,
                gpus,
                types,
                weight: 1,
            }),
        }
    }
    shapes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn slots(free: &[u32]) -> Vec<DeviceSlot> {
        free.iter()
            .zip(0..)
            .map(|(&free, index)| DeviceSlot { index, free })
            .collect()
    }

    #[test]
    fn whole_gpus_take_wholly_free_devices_lowest_first() {
        let s = slots(&[500, 1000, 1000, 0]);
        assert_eq!(
            choose(&s, GpuAsk::Whole(2)),
            Some(vec![DeviceShare::whole(1), DeviceShare::whole(2)])
        );
        assert_eq!(choose(&s, GpuAsk::Whole(3)), None);
        assert_eq!(choose(&s, GpuAsk::None), Some(Vec::new()));
        assert_eq!(choose(&[], GpuAsk::Whole(1)), None);
    }

    #[test]
    fn a_fraction_takes_the_fullest_device_with_room() {
        let s = slots(&[1000, 300, 250, 200]);
        let share = |index, milli| Some(vec![DeviceShare { index, milli }]);
        assert_eq!(choose(&s, GpuAsk::Fraction(250)), share(2, 250));
        assert_eq!(choose(&s, GpuAsk::Fraction(301)), share(0, 301));
        assert_eq!(choose(&slots(&[200, 100]), GpuAsk::Fraction(250)), None);
        // Equal room: the lower index.
        assert_eq!(
            choose(&slots(&[400, 400]), GpuAsk::Fraction(100)),
            share(0, 100)
        );
    }

    #[test]
    fn holds_agrees_with_choose() {
        let asks = [
            GpuAsk::None,
            GpuAsk::Whole(0),
            GpuAsk::Whole(1),
            GpuAsk::Whole(2),
            GpuAsk::Whole(3),
            GpuAsk::Fraction(1),
            GpuAsk::Fraction(500),
            GpuAsk::Fraction(999),
        ];
        let frees: [&[u32]; 7] = [
            &[],
            &[0],
            &[1000],
            &[999, 1000],
            &[500, 0],
            &[1000, 1000],
            &[1000, 499, 1000],
        ];
        for free in frees {
            for ask in asks {
                let s = slots(free);
                assert_eq!(
                    holds(&s, ask),
                    choose(&s, ask).is_some(),
                    "{free:?} {ask:?}"
                );
            }
        }
    }

    #[test]
    fn alternatives_cover_each_distinct_room_once() {
        let s = slots(&[1000, 400, 400, 100]);
        let indices: Vec<u32> = alternatives(&s, GpuAsk::Fraction(300))
            .iter()
            .map(|shares| shares[0].index)
            .collect();
        assert_eq!(indices, [1, 0], "the fullest device first");
        assert_eq!(alternatives(&s, GpuAsk::Whole(1)).len(), 1);
        assert!(alternatives(&s, GpuAsk::Whole(2)).is_empty());
    }

    #[test]
    fn take_is_all_or_nothing() {
        let mut s = slots(&[1000, 300]);
        assert!(take(
            &mut s,
            &[DeviceShare {
                index: 1,
                milli: 300
            }]
        ));
        assert_eq!(s, slots(&[1000, 0]));
        let before = s.clone();
        assert!(!take(
            &mut s,
            &[DeviceShare::whole(0), DeviceShare { index: 1, milli: 1 }]
        ));
        assert!(!take(&mut s, &[DeviceShare::whole(7)]));
        assert_eq!(s, before);
        assert_eq!(whole_free(&s), 1);
    }

    fn shape(gpus: GpuAsk, weight: u64) -> DemandShape {
        DemandShape {
            resources: Resources::new(1000, 1024, 0),
            gpus,
            types: GpuPreference::Any,
            weight,
        }
    }

    #[test]
    fn fragmentation_counts_what_each_shape_cannot_use() {
        let free = Resources::new(8000, 16_384, 0);
        let a10g = Some(&GpuType::A10G);
        let s = slots(&[1000, 600, 200]);
        // Half a GPU can use devices 0 and 1, not the 200 left on device 2.
        assert_eq!(
            fragmentation(&s, &free, a10g, &[shape(GpuAsk::Fraction(500), 1)]),
            200
        );
        // A whole GPU can use only device 0.
        assert_eq!(
            fragmentation(&s, &free, a10g, &[shape(GpuAsk::Whole(1), 1)]),
            800
        );
        // Two whole GPUs cannot run here at all: every free milli-GPU is lost to them.
        assert_eq!(
            fragmentation(&s, &free, a10g, &[shape(GpuAsk::Whole(2), 1)]),
            1800
        );
        // Weights multiply, shapes add.
        let demand = [shape(GpuAsk::Fraction(500), 3), shape(GpuAsk::Whole(1), 2)];
        assert_eq!(fragmentation(&s, &free, a10g, &demand), 3 * 200 + 2 * 800);
        // Without the CPU a shape needs, it can use nothing.
        let tight = Resources::new(500, 16_384, 0);
        assert_eq!(
            fragmentation(&s, &tight, a10g, &[shape(GpuAsk::Fraction(100), 1)]),
            1800
        );
        // Nor without the memory (the paper's simulator checks CPU alone; memory strands
        // GPUs the same way).
        let short = Resources::new(8000, 512, 0);
        assert_eq!(
            fragmentation(&s, &short, a10g, &[shape(GpuAsk::Fraction(100), 1)]),
            1800
        );
    }

    #[test]
    fn a_shape_that_does_not_accept_the_workers_gpu_type_can_use_none_of_its_gpus() {
        let free = Resources::new(8000, 16_384, 0);
        let s = slots(&[1000, 600]);
        let a10g_or_t4 = DemandShape {
            types: GpuPreference::Types(vec![GpuType::A10G, GpuType::T4]),
            ..shape(GpuAsk::Whole(1), 2)
        };
        let demand = [a10g_or_t4];
        assert_eq!(
            fragmentation(&s, &free, Some(&GpuType::T4), &demand),
            2 * 600
        );
        assert_eq!(
            fragmentation(&s, &free, Some(&GpuType::H100), &demand),
            2 * 1600
        );
        // A worker of no stated type serves no shape (the rules send it no GPU request).
        assert_eq!(fragmentation(&s, &free, None, &demand), 2 * 1600);
        let any = [shape(GpuAsk::Whole(1), 2)];
        assert_eq!(fragmentation(&s, &free, None, &any), 2 * 1600);
        assert_eq!(
            fragmentation(&s, &free, Some(&GpuType::H100), &any),
            2 * 600
        );
    }

    #[test]
    fn scarcity_multiplies_a_shapes_weight_by_the_pools_gpus_over_those_it_accepts() {
        let typed = |types: Vec<GpuType>, weight| DemandShape {
            types: GpuPreference::Types(types),
            ..shape(GpuAsk::Whole(1), weight)
        };
        let h100 = GpuType::Other("H100X".to_owned());
        let pool = BTreeMap::from([(GpuType::T4, 30), (GpuType::A10G, 10), (h100.clone(), 0)]);
        let demand = [
            shape(GpuAsk::Whole(1), 7),
            typed(vec![GpuType::A10G], 3),
            typed(vec![GpuType::T4, GpuType::A10G], 3),
            typed(vec![GpuType::T4], 2),
            typed(vec![h100], 5),
        ];
        let weights: Vec<u64> = weighed_by_scarcity(&demand, &pool)
            .iter()
            .map(|s| s.weight)
            .collect();
        // Any type: as given. A10G is a quarter of the pool, T4 three quarters (2 * 40 / 30
        // rounds to 3); no GPU of the pool is an H100X.
        assert_eq!(weights, [7, 12, 3, 3, 0]);
        let half = BTreeMap::from([(GpuType::T4, 3), (GpuType::A10G, 2)]);
        let rounded = weighed_by_scarcity(&[typed(vec![GpuType::T4], 1)], &half);
        assert_eq!(rounded[0].weight, 2, "5 / 3 rounds up");
        let down = BTreeMap::from([(GpuType::T4, 4), (GpuType::A10G, 1)]);
        let rounded = weighed_by_scarcity(&[typed(vec![GpuType::T4], 1)], &down);
        assert_eq!(rounded[0].weight, 1, "5 / 4 rounds down");
        // A type with less than 1/256 of the pool weighs as if it had that share.
        let rare = BTreeMap::from([(GpuType::T4, 10_000), (GpuType::A10G, 1)]);
        let capped = weighed_by_scarcity(&[typed(vec![GpuType::A10G], 2)], &rare);
        assert_eq!(capped[0].weight, 2 * MAX_SCARCITY);
        let just = BTreeMap::from([(GpuType::T4, 255), (GpuType::A10G, 1)]);
        let exact = weighed_by_scarcity(&[typed(vec![GpuType::A10G], 2)], &just);
        assert_eq!(exact[0].weight, 2 * 256);
        let under = BTreeMap::from([(GpuType::T4, 254), (GpuType::A10G, 1)]);
        let scaled = weighed_by_scarcity(&[typed(vec![GpuType::A10G], 2)], &under);
        assert_eq!(scaled[0].weight, 2 * 255);
    }

    #[test]
    fn demand_groups_equal_shapes_and_skips_cpu_only_requests() {
        let a = Resources::new(1000, 1024, 1);
        let b = Resources::new(2000, 1024, 0);
        let any = GpuPreference::Any;
        let t4 = GpuPreference::Types(vec![GpuType::T4]);
        let demand = demand_of([
            (&a, GpuAsk::Whole(1), &any),
            (&a, GpuAsk::Whole(1), &any),
            (&b, GpuAsk::Fraction(250), &any),
            (&b, GpuAsk::None, &any),
            (&a, GpuAsk::Whole(1), &t4),
            (
                &b,
                GpuAsk::Whole(1),
                &GpuPreference::Types(vec![GpuType::T4, GpuType::A10G]),
            ),
            (
                &b,
                GpuAsk::Whole(1),
                &GpuPreference::Types(vec![GpuType::A10G, GpuType::T4, GpuType::A10G]),
            ),
        ]);
        assert_eq!(demand.len(), 4, "{demand:?}");
        // The same types in another order, or named twice, are the same shape.
        let listed = GpuPreference::Types(vec![GpuType::T4, GpuType::A10G]);
        assert_eq!((demand[3].types.clone(), demand[3].weight), (listed, 2));
        assert_eq!(demand[0].weight, 2);
        assert_eq!((demand[2].types.clone(), demand[2].weight), (t4, 1));
        assert_eq!(demand[0].resources.gpu_count, 0);
        assert_eq!(demand[1].gpus, GpuAsk::Fraction(250));
        assert_eq!(GpuAsk::Whole(2).milli(), 2000);
        assert_eq!(GpuAsk::Fraction(250).milli(), 250);
        assert_eq!(GpuAsk::None.milli(), 0);
    }
}
