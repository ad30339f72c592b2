//! The builder: hash-and-displace over the fixed lookup formula (see the
//! parent module's "Construction"), with per-table multipliers derived from
//! the id set and a bounded first pass of the fallback ladder.

use super::*;

/// Reusable scratch space for building tables; [`Table::build`] makes a
/// fresh one. Keep one around to build many tables without re-allocating.
#[derive(Default)]
pub struct Builder {
    ids: Vec<u64>,
    ptrs: Vec<*const c_void>,
    /// Per key: its bin under the current `k2`, its slot hash under `k1`.
    bin_of: Vec<u32>,
    slot_of: Vec<u32>,
    /// Keys grouped by bin: bin `b` holds `by_bin[bin_start[b]..bin_start[b + 1]]`.
    bin_start: Vec<u32>,
    by_bin: Vec<u32>,
    /// Non-empty bins, largest first (ties by bin index): the placement order.
    order: Vec<u32>,
    /// Where the single-key bins start in `order`.
    first_single: usize,
    /// Counting-sort scratch.
    cursor: Vec<u32>,
    taken: Vec<u64>,
    disp: Vec<u16>,
    /// Cost of the current build (see [`Builder::last_work`]).
    work: u64,
}

/// A table shape with its two multipliers.
#[derive(Clone, Copy)]
struct Shape {
    k1: u64,
    k2: u64,
    log_s: u32,
    log_b: u32,
}

/// What one placement attempt came to.
enum Placement {
    /// Every key has a slot.
    Done,
    /// Two keys of one bin share a slot hash: no displacement separates them.
    SlotCollision,
    /// Some bin found no free displacement (within the budget).
    Stuck,
}

/// Limits of the bounded first pass of the ladder, which keep structured id
/// sets (`k << s`, `k * c`, aligned pointers) within a few times the build
/// time of a random set. Multiply-shift maps an arithmetic progression onto a
/// lattice: some bin multipliers then crowd keys into a few large bins, or
/// give bins whose slot patterns repeat so that placement stalls, and no
/// slot multiplier helps. So a bin multiplier is skipped when its bins are
/// far more crowded than random ones, a placement is abandoned once its
/// displacement searches exceed a small multiple of `n` (a random set needs
/// about one probe per key), and a bin multiplier is dropped after one
/// stalled placement; after the first bin multiplier, the next few are tried
/// least crowded first. All three are counts, not times: builds stay
/// deterministic.
#[derive(Clone, Copy)]
struct Bounds {
    /// Displacements a placement may try in all.
    probes: u64,
    keys: u64,
}

impl Bounds {
    fn for_keys(n: usize) -> Bounds {
        let keys = n as u64;
        Bounds { probes: PROBES_PER_KEY * keys + PROBES_MIN, keys }
    }

    /// Largest accepted `Σ c·(c − 1)` over bin sizes: twice the expectation
    /// for random bins (`n·(n − 1) / B`), plus slack for small tables.
    fn max_crowding(self, log_b: u32) -> u64 {
        2 * ((self.keys * self.keys.saturating_sub(1)) >> log_b) + 16
    }
}

/// Displacements a bounded placement may try per key, and at least.
const PROBES_PER_KEY: u64 = 4;
const PROBES_MIN: u64 = 256;

/// Bin multipliers tried per `(S, B)` shape, and slot multipliers per bin
/// multiplier: [`ATTEMPTS_PER_SHAPE`] pairs in all.
const BIN_ATTEMPTS: u32 = 8;
/// Bin multipliers ranked by crowding before the bounded pass places any.
const RANKED_BIN_ATTEMPTS: usize = 4;
const SLOT_ATTEMPTS: u32 = ATTEMPTS_PER_SHAPE / BIN_ATTEMPTS;

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Build a table; see [`Table::build`].
    ///
    /// No sorting: every placement decision depends only on the id set (bins
    /// are visited by size, then index), and the seed is a commutative mix
    /// of the ids, so the input order cannot change a byte of the result.
    pub fn build(&mut self, entries: &[(u64, *const c_void)]) -> Result<Table, BuildError> {
        let n = entries.len();
        if n > MAX_ENTRIES {
            return Err(BuildError::TooMany { count: n });
        }
        self.ids.clear();
        self.ptrs.clear();
        self.work = 0;
        let mut seed = n as u64;
        for (index, &(id, ptr)) in entries.iter().enumerate() {
            if id == 0 {
                return Err(BuildError::ZeroId { index });
            }
            if ptr.is_null() {
                return Err(BuildError::NullPointer { id });
            }
            seed = seed.wrapping_add(splitmix64(id));
            self.ids.push(id);
            self.ptrs.push(ptr);
        }
        let first_log_s = n.next_power_of_two().trailing_zeros().max(1);
        // Pass 1 is bounded (see `Bounds`); pass 2, the plain ladder, is a
        // safety net that no tested id set has reached.
        for bounds in [Some(Bounds::for_keys(n)), None] {
            for log_s in first_log_s..=LOG2_MAX_SIZE {
                for log_b in log_b_ladder(log_s) {
                    // Bounded: if the first bin multiplier fails, the least
                    // crowded of the next few go first (for ids on a lattice
                    // some are near-perfect). Random sets rarely get there.
                    let mut order: [u32; BIN_ATTEMPTS as usize] = core::array::from_fn(|i| i as u32);
                    // Crowding already counted by the ranking, per position in `order`.
                    let mut known = [None; BIN_ATTEMPTS as usize];
                    for next in 0..order.len() {
                        if next == 1 && bounds.is_some() {
                            let mut ranked = [(0u64, 0u32); RANKED_BIN_ATTEMPTS];
                            for (r, &a) in ranked.iter_mut().zip(&order[1..]) {
                                *r = (self.crowding(multiplier(seed, log_s, log_b, a, u32::MAX), log_b), a);
                            }
                            ranked.sort_unstable();
                            for ((o, k), r) in order[1..].iter_mut().zip(&mut known[1..]).zip(ranked) {
                                *o = r.1;
                                *k = Some(r.0);
                            }
                        }
                        let bin_attempt = order[next];
                        if let (Some(b), Some(crowding)) = (bounds, known[next]) {
                            if crowding > b.max_crowding(log_b) {
                                continue; // ranked as too crowded: no need to sort it again
                            }
                        }
                        let k2 = multiplier(seed, log_s, log_b, bin_attempt, u32::MAX);
                        let crowding = self.sort_into_bins(k2, log_b);
                        if bounds.is_some_and(|b| crowding > b.max_crowding(log_b)) {
                            continue; // far more crowded than random bins: skip placing
                        }
                        for slot_attempt in 0..SLOT_ATTEMPTS {
                            let k1 = multiplier(seed, log_s, log_b, bin_attempt, slot_attempt);
                            let shape = Shape { k1, k2, log_s, log_b };
                            match self.place(shape, bounds.map_or(u64::MAX, |b| b.probes))? {
                                Placement::Done => return Ok(self.emit(shape)),
                                Placement::SlotCollision => {}
                                Placement::Stuck => {
                                    // Structured ids defeat some bin multipliers
                                    // whatever k1 is: move on at once.
                                    if bounds.is_some() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Err(BuildError::Exhausted { count: n })
    }

    /// A machine-independent measure of what the last [`Builder::build`]
    /// cost: keys hashed plus bins visited plus displacements tried, over
    /// every attempt of the ladder. For tests and tuning (a random set of
    /// `n` ids costs about `4n`); deterministic like the table itself.
    pub fn last_work(&self) -> u64 {
        self.work
    }

    /// `Σ c·(c − 1)` over the bin sizes `c` under `k2`, counted only.
    fn crowding(&mut self, k2: u64, log_b: u32) -> u64 {
        self.work += self.ids.len() as u64;
        let t = 64 - log_b;
        self.cursor.clear();
        self.cursor.resize(1usize << log_b, 0);
        let mut crowding = 0;
        for &id in &self.ids {
            let count = &mut self.cursor[(id.wrapping_mul(k2) >> t) as usize];
            crowding += 2 * u64::from(*count);
            *count += 1;
        }
        crowding
    }

    /// Group keys by bin `(id * k2) >> (64 - log_b)` and order the non-empty
    /// bins largest first (counting sorts, O(n + B)). Returns the crowding
    /// `Σ c·(c − 1)` over bin sizes `c` (twice the number of key pairs
    /// sharing a bin).
    fn sort_into_bins(&mut self, k2: u64, log_b: u32) -> u64 {
        let bins = 1usize << log_b;
        let t = 64 - log_b;
        self.work += (self.ids.len() + bins) as u64;
        self.bin_of.clear();
        self.bin_of.extend(self.ids.iter().map(|&id| (id.wrapping_mul(k2) >> t) as u32));

        // bin_start[b + 1] = keys in bin b; then prefix sums.
        self.bin_start.clear();
        self.bin_start.resize(bins + 1, 0);
        let mut largest = 0;
        for &b in &self.bin_of {
            let count = &mut self.bin_start[b as usize + 1];
            *count += 1;
            largest = largest.max(*count);
        }
        // Non-empty bins by size, largest first; within a size, by index.
        self.cursor.clear();
        self.cursor.resize(largest as usize + 1, 0);
        for &count in &self.bin_start[1..] {
            self.cursor[count as usize] += 1;
        }
        let crowding: u64 = self.cursor.iter().enumerate().map(|(c, &bins)| (c as u64) * (c as u64).saturating_sub(1) * u64::from(bins)).sum();
        let mut at = 0;
        for size in (1..=largest as usize).rev() {
            let here = self.cursor[size];
            self.cursor[size] = at;
            at += here;
        }
        self.first_single = if largest == 0 { 0 } else { self.cursor[1] as usize };
        self.order.clear();
        self.order.resize(at as usize, 0);
        for (b, &count) in self.bin_start[1..].iter().enumerate() {
            if count > 0 {
                let slot = &mut self.cursor[count as usize];
                self.order[*slot as usize] = b as u32;
                *slot += 1;
            }
        }
        // Prefix sums with the running total in a register (no store-to-load chain).
        let mut running = 0;
        for start in &mut self.bin_start[1..] {
            running += *start;
            *start = running;
        }
        // Keys grouped by bin.
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.bin_start[..bins]);
        self.by_bin.clear();
        self.by_bin.resize(self.ids.len(), 0);
        for (key, &b) in self.bin_of.iter().enumerate() {
            let slot = &mut self.cursor[b as usize];
            self.by_bin[*slot as usize] = key as u32;
            *slot += 1;
        }
        crowding
    }

    /// Try slot multiplier `shape.k1` on the current bins: fill `self.disp`,
    /// giving up once the displacement searches have tried more than
    /// `budget` displacements in all. `Err`: a duplicate id (two keys that
    /// collide in bin and slot under every multiplier).
    fn place(&mut self, shape: Shape, budget: u64) -> Result<Placement, BuildError> {
        let mut spent: u64 = 0;
        let result = self.place_counted(shape, budget, &mut spent);
        self.work += self.ids.len() as u64 + spent;
        result
    }

    fn place_counted(&mut self, shape: Shape, budget: u64, spent: &mut u64) -> Result<Placement, BuildError> {
        let size = 1usize << shape.log_s;
        let s = 64 - shape.log_s;
        self.slot_of.clear();
        self.slot_of.extend(self.ids.iter().map(|&id| (id.wrapping_mul(shape.k1) >> s) as u32));
        self.taken.clear();
        self.taken.resize(size.div_ceil(64), 0);
        self.disp.clear();
        self.disp.resize(1usize << shape.log_b, 0);

        // Bins with two or more keys: the first displacement that sends all
        // of them to free slots.
        let mut slots = [0usize; 16];
        let mut spill = Vec::new();
        for &b in &self.order[..self.first_single] {
            let b = b as usize;
            let keys = &self.by_bin[self.bin_start[b] as usize..self.bin_start[b + 1] as usize];
            let slots: &mut [usize] = if keys.len() <= slots.len() {
                &mut slots[..keys.len()]
            } else {
                spill.resize(keys.len(), 0);
                &mut spill[..]
            };
            for (slot, &k) in slots.iter_mut().zip(keys) {
                *slot = self.slot_of[k as usize] as usize;
            }
            // Two keys with one slot hash can never be separated by `^ d`.
            for i in 1..slots.len() {
                if let Some(j) = slots[..i].iter().position(|&other| other == slots[i]) {
                    let (a, c) = (self.ids[keys[i] as usize], self.ids[keys[j] as usize]);
                    if a == c {
                        return Err(BuildError::DuplicateId { id: a });
                    }
                    return Ok(Placement::SlotCollision);
                }
            }
            let taken = &self.taken;
            let free = |slot: usize| taken[slot >> 6] & (1u64 << (slot & 63)) == 0;
            let limit = size.min(usize::try_from(budget - *spent).unwrap_or(usize::MAX));
            let Some(d) = (0..limit).find(|&d| slots.iter().all(|&slot| free(slot ^ d))) else {
                *spent += limit as u64;
                return Ok(Placement::Stuck);
            };
            *spent += d as u64 + 1;
            for &slot in slots.iter() {
                self.taken[(slot ^ d) >> 6] |= 1u64 << ((slot ^ d) & 63);
            }
            self.disp[b] = d as u16;
        }

        // Single-key bins: straight to the next free slot, no search.
        let mut word = 0;
        for &b in &self.order[self.first_single..] {
            let b = b as usize;
            while self.taken[word] == u64::MAX {
                word += 1;
            }
            let bit = (!self.taken[word]).trailing_zeros() as usize;
            self.taken[word] |= 1u64 << bit;
            let key = self.by_bin[self.bin_start[b] as usize] as usize;
            self.disp[b] = (self.slot_of[key] as usize ^ (word * 64 + bit)) as u16;
        }
        Ok(Placement::Done)
    }

    /// Write the table for a shape that [`Builder::place`] accepted.
    fn emit(&self, shape: Shape) -> Table {
        let size = 1usize << shape.log_s;
        let bins = 1usize << shape.log_b;
        let entry_size = core::mem::size_of::<RawEntry>();
        let entries_offset = (HEADER_SIZE + 2 * bins).next_multiple_of(entry_size);
        let bytes = entries_offset + size * entry_size;
        let layout = block_layout(bytes);
        // SAFETY: layout has a non-zero size.
        let block = unsafe { alloc::alloc_zeroed(layout) };
        let Some(raw) = NonNull::new(block.cast::<RawTable>()) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: `block` is a fresh zeroed allocation of `bytes` bytes aligned
        // to 64: the header fits at 0, d[bins] at HEADER_SIZE, and `size`
        // entries at the 16-aligned `entries_offset`; no index below leaves
        // those ranges (disp < size, slot ^ disp < size).
        unsafe {
            raw.as_ptr().write(RawTable {
                k1: shape.k1,
                k2: shape.k2,
                s: (64 - shape.log_s) as u8,
                t: (64 - shape.log_b) as u8,
                reserved: 0,
                count: self.ids.len() as u32,
                size: size as u32,
                entries_offset: entries_offset as u32,
                d: [],
            });
            let d = block.add(HEADER_SIZE).cast::<u16>();
            ptr::copy_nonoverlapping(self.disp.as_ptr(), d, bins);
            let entries = block.add(entries_offset).cast::<RawEntry>();
            for (key, (&id, &ptr)) in self.ids.iter().zip(&self.ptrs).enumerate() {
                let slot = self.slot_of[key] as usize ^ self.disp[self.bin_of[key] as usize] as usize;
                entries.add(slot).write(RawEntry { id, ptr });
            }
        }
        Table { raw }
    }
}

/// The bin counts (log2) the ladder tries for a table of `2^log_s` slots:
/// small tables start at B = 2S (half the in-bin slot collisions, so fewer
/// retries, for a few bytes of displacements), larger ones at B = S; each
/// size also tries the next B, and the largest size, which cannot grow
/// further, goes on to B = 4S.
fn log_b_ladder(log_s: u32) -> core::ops::RangeInclusive<u32> {
    let narrowest = if log_s <= SMALL_LOG2_SIZE { log_s + 1 } else { log_s };
    let widest = if log_s == LOG2_MAX_SIZE { log_s + 2 } else { log_s + 1 };
    narrowest..=widest
}

/// An odd multiplier, a pure function of the id-set seed and the ladder
/// position (`slot_attempt == u32::MAX` names the bin multiplier).
fn multiplier(seed: u64, log_s: u32, log_b: u32, bin_attempt: u32, slot_attempt: u32) -> u64 {
    let position = u64::from(log_s) << 56 | u64::from(log_b) << 48 | u64::from(bin_attempt) << 32 | u64::from(slot_attempt);
    splitmix64(splitmix64(seed ^ position)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ladder's shape, rung by rung: no id set tested reaches the B = 4S
    /// rung of the largest size, so only this pins it.
    #[test]
    fn bin_ladder_per_size() {
        assert_eq!(log_b_ladder(1), 2..=2);
        assert_eq!(log_b_ladder(SMALL_LOG2_SIZE), SMALL_LOG2_SIZE + 1..=SMALL_LOG2_SIZE + 1);
        assert_eq!(log_b_ladder(SMALL_LOG2_SIZE + 1), SMALL_LOG2_SIZE + 1..=SMALL_LOG2_SIZE + 2);
        assert_eq!(log_b_ladder(LOG2_MAX_SIZE - 1), LOG2_MAX_SIZE - 1..=LOG2_MAX_SIZE);
        assert_eq!(log_b_ladder(LOG2_MAX_SIZE), LOG2_MAX_SIZE..=LOG2_MAX_SIZE + 2);
    }
}
