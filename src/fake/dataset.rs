//! A deterministic project generated from a seed, never stored: any job can be recomputed from
//! its id, so a million-job project costs no memory. The generator covers the API's quirks:
//! uneven batches, an empty batch, a batch of exactly one full page followed by an empty page,
//! jobs repeated across page boundaries, all three last-token styles, unknown fields, unicode.

use serde_json::{Value, json};

/// The documented first page token looks like a timestamp; later pages count up from it.
const TOKEN_BASE: u64 = 1_575_822_103_313_046_000;

/// The shape of a generated project.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    pub seed: u64,
    pub project: String,
    pub batches: usize,
    pub jobs: usize,
    pub page_size: usize,
    /// Add a batch and a job whose ids try to escape the output directory.
    pub hostile_ids: bool,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        Self { seed: 1, project: "demo-project".into(), batches: 8, jobs: 1_000, page_size: 100, hostile_ids: false }
    }
}

/// The hostile ids served with [`DatasetSpec::hostile_ids`].
pub const HOSTILE_BATCH: &str = "../../escaped-batch";
pub const HOSTILE_JOB: &str = "../../../escaped-job";

/// A generated project, at a generation: each [`Dataset::advanced`] is "time passing".
#[derive(Clone, Debug)]
pub struct Dataset {
    pub spec: DatasetSpec,
    /// How often time has passed. From generation 1 on, when there are at least six batches:
    /// batch 2 sees some jobs complete, batch 3 gains jobs, batch 4 loses its first job, the last
    /// batch is gone and a new one is there; every other batch stays byte-identical.
    pub generation: u64,
    sizes: Vec<usize>,
    ids: Vec<String>,
}

/// Jobs of the batch added when time passes.
const ADDED_BATCH_JOBS: usize = 25;
/// Jobs added to batch 3 each time time passes.
const GROWTH: usize = 5;

/// splitmix64: a fast, well-mixed hash for deterministic data and fault draws.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Dataset {
    pub fn new(spec: DatasetSpec) -> Self {
        let n = spec.batches;
        let mut sizes = vec![0usize; n];
        let mut left = spec.jobs;
        // Batch 0 is empty and batch 1 holds exactly one full page, when there is room.
        if n >= 3 && left >= spec.page_size {
            sizes[1] = spec.page_size;
            left -= spec.page_size;
        }
        let free: Vec<usize> = if n >= 3 { (2..n).collect() } else { (0..n).collect() };
        if !free.is_empty() {
            let weights: Vec<u64> = free.iter().map(|&b| 1 + mix(spec.seed ^ (b as u64) << 8) % 9).collect();
            let total: u64 = weights.iter().sum();
            let mut given = 0;
            for (i, &b) in free.iter().enumerate() {
                let share =
                    if i + 1 == free.len() { left - given } else { (left as u64 * weights[i] / total) as usize };
                sizes[b] = share;
                given += share;
            }
        }
        // One batch more than asked for: the one that appears when time passes.
        sizes.push(ADDED_BATCH_JOBS);
        let ids = (0..=n).map(|b| batch_id(spec.seed, b)).collect();
        Self { spec, generation: 0, sizes, ids }
    }

    /// The same project after time has passed once more.
    pub fn advanced(&self) -> Self {
        Self { generation: self.generation + 1, ..self.clone() }
    }

    /// Whether time-passing changes apply (they need six batches for their distinct roles).
    fn changing(&self) -> bool {
        self.generation > 0 && self.spec.batches >= 6
    }

    /// Indices of the batches in the project now.
    pub fn live(&self) -> Vec<usize> {
        let n = self.spec.batches;
        if self.changing() { (0..n - 1).chain([n]).collect() } else { (0..n).collect() }
    }

    /// Ids of the batches in the project now (with the hostile one, if asked for).
    pub fn batch_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.live().into_iter().map(|b| self.ids[b].clone()).collect();
        if self.spec.hostile_ids {
            ids.push(HOSTILE_BATCH.into());
        }
        ids
    }

    /// The id of batch `b`, whether or not it is in the project now.
    pub fn batch_id(&self, b: usize) -> &str {
        &self.ids[b]
    }

    pub fn batch_index(&self, id: &str) -> Option<usize> {
        self.live().into_iter().find(|&b| self.ids[b] == id)
    }

    /// Job indices `first..end` of batch `b` as listed now.
    fn span(&self, b: usize) -> (usize, usize) {
        let mut end = self.sizes[b] + usize::from(self.spec.hostile_ids && b == 2);
        let mut first = 0;
        if self.changing() && b == 3 {
            end += GROWTH * self.generation as usize;
        }
        if self.changing() && b == 4 && end > 0 {
            first = 1;
        }
        (first, end)
    }

    pub fn batch_size(&self, b: usize) -> usize {
        let (first, end) = self.span(b);
        end - first
    }

    pub fn total_jobs(&self) -> usize {
        self.live().into_iter().map(|b| self.batch_size(b)).sum()
    }

    fn completed(&self, b: usize, j: usize) -> bool {
        j % 7 != 3 || (self.changing() && b == 2 && j < 10 * self.generation as usize)
    }

    /// The `data` of project details.
    pub fn details(&self) -> Value {
        let mut batches: Vec<Value> = self.live().into_iter().map(|b| self.batch_summary(b)).collect();
        if self.spec.hostile_ids {
            batches.push(json!({"id": HOSTILE_BATCH, "name": "escape", "total_jobs": 0}));
        }
        json!({"name": "Demo project – ünïcode ✓", "base": "IMAGE", "batches": batches, "x_owner": {"team": "qa"}})
    }

    fn batch_summary(&self, b: usize) -> Value {
        let n = self.batch_size(b);
        let (first, end) = self.span(b);
        let done = (first..end).filter(|&j| self.completed(b, j)).count();
        json!({
            "id": self.ids[b],
            "name": if b.is_multiple_of(2) { format!("Batch {b}") } else { format!("Lot {b} – 车辆 🚗") },
            "description": if b == 0 { "empty on purpose".to_string() } else { format!("jobs created for run {b}") },
            "is_default": b == 0,
            "total_jobs": n,
            "completed_jobs": done,
            "total_frames": n * 2,
            "completed_frames": done * 2,
            "annotations": done * 3,
            "created_at": format!("2019-08-{:02}T17:55:13.203229+05:30", 1 + b % 28),
            "status": if done == n { "Complete" } else { "In Progress" },
            "x_priority_class": b % 4,
        })
    }

    /// Job indices of a batch, in listing order without repeats.
    pub fn job_indices(&self, b: usize) -> std::ops::Range<usize> {
        let (first, end) = self.span(b);
        first..end
    }

    /// Job ids of a batch, in listing order without repeats.
    pub fn job_ids(&self, b: usize) -> Vec<String> {
        self.job_indices(b).map(|j| self.job_id(b, j)).collect()
    }

    pub fn job_id(&self, b: usize, j: usize) -> String {
        if self.spec.hostile_ids && b == 2 && j == self.sizes[b] {
            return HOSTILE_JOB.into();
        }
        let h = mix(self.spec.seed ^ ((b as u64) << 40) ^ j as u64);
        format!("{:08x}-{b:04x}-{:04x}-{:04x}-{:012x}", h >> 32, j >> 16, j & 0xffff, h & 0xffff_ffff_ffff)
    }

    /// `(batch, job index)` of a job id, if this dataset has it.
    pub fn locate(&self, id: &str) -> Option<(usize, usize)> {
        let parts: Vec<&str> = id.split('-').collect();
        if parts.len() != 5 {
            return None;
        }
        let b = usize::from_str_radix(parts[1], 16).ok()?;
        let j = (usize::from_str_radix(parts[2], 16).ok()? << 16) | usize::from_str_radix(parts[3], 16).ok()?;
        let live = self.live().contains(&b);
        (live && self.job_indices(b).contains(&j) && self.job_id(b, j) == id).then_some((b, j))
    }

    /// A job's listing entry.
    pub fn job(&self, b: usize, j: usize) -> Value {
        let id = self.job_id(b, j);
        let mut job = json!({
            "id": id,
            "reference_id": if j.is_multiple_of(5) { format!("réf-{b}-{j}-画像") } else { format!("{:03}", j + 1) },
            "status": if self.completed(b, j) { "completed" } else { "labelling" },
            "frames": 1 + j % 3,
            "annotations": if self.completed(b, j) { 1 + j % 4 } else { 0 },
        });
        if b % 2 == 1 {
            job["priority_weight"] = json!(5);
            job["tag"] = json!("sample-task");
            job["viewer_url"] = json!("");
        }
        if j % 4 == 1 {
            job["x_unknown"] = json!({"nested": [1, "ü", null, 2.50]});
        }
        job
    }

    /// The `data` of one listing page, and how many jobs are on it.
    pub fn page(&self, b: usize, token: &str) -> Option<Value> {
        let size = self.spec.page_size.max(1);
        let n = self.batch_size(b);
        let first = self.span(b).0;
        let page = if token.is_empty() { 0 } else { token.parse::<u64>().ok()?.checked_sub(TOKEN_BASE)? as usize };
        let pages = n.div_ceil(size).max(1);
        // A batch that ends on a full page answers one more, empty page.
        let trailing_empty = n > 0 && n.is_multiple_of(size) && b % 2 == 1;
        if page > pages || (page == pages && !trailing_empty) {
            return None;
        }
        let mut start = (page * size).min(n);
        let end = ((page + 1) * size).min(n);
        // Even batches repeat the previous page's last job at the top of the next page.
        if b.is_multiple_of(2) && page > 0 && start < end {
            start -= 1;
        }
        let jobs: Vec<Value> = (start..end).map(|pos| self.job(b, first + pos)).collect();
        let more = page + 1 < pages || (page + 1 == pages && trailing_empty);
        let mut data =
            json!({"id": self.ids[b], "project_id": self.spec.project, "name": format!("Batch {b}"), "jobs": jobs});
        if more {
            data["next_page_token"] = json!((TOKEN_BASE + page as u64 + 1).to_string());
        } else {
            match b % 3 {
                0 => data["next_page_token"] = json!(""),
                1 => data["next_page_token"] = Value::Null,
                _ => {}
            }
        }
        Some(data)
    }

    /// Listing pages of batch `b`, walked the way an exporter walks them.
    pub fn pages(&self, b: usize) -> u64 {
        let (mut token, mut n) = (String::new(), 0);
        while let Some(page) = self.page(b, &token) {
            n += 1;
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() && !page["jobs"].as_array().is_none_or(Vec::is_empty) => token = t.to_owned(),
                _ => break,
            }
        }
        n
    }

    /// Jobs now listed whose listing entry was not in `old` as it is now: new or changed.
    pub fn changed_jobs(&self, old: &Dataset) -> Vec<(usize, usize)> {
        let old_live = old.live();
        self.live()
            .into_iter()
            .flat_map(|b| self.job_indices(b).map(move |j| (b, j)))
            .filter(|&(b, j)| {
                let was_listed = old_live.contains(&b) && old.job_indices(b).contains(&j);
                !was_listed || old.job(b, j) != self.job(b, j)
            })
            .collect()
    }

    /// The fewest requests a sync from `old` to this state can make: the details call, the pages
    /// of every new or changed batch, the results of new and changed jobs, and (with annotations)
    /// two requests per document of those jobs.
    pub fn sync_minimum(&self, old: &Dataset) -> Value {
        let old_live = old.live();
        let pages: u64 = self
            .live()
            .into_iter()
            .filter(|&b| !old_live.contains(&b) || old.batch_summary(b) != self.batch_summary(b))
            .map(|b| self.pages(b))
            .sum();
        let jobs = self.changed_jobs(old);
        let documents = jobs.iter().filter(|&&(b, j)| self.completed(b, j)).count();
        json!({
            "details": 1, "pages": pages, "jobs": jobs.len(), "documents": documents,
            "requests": 1 + pages + jobs.len() as u64,
            // A document costs the attachments call and the storage fetch.
            "requests_with_documents": 1 + pages + jobs.len() as u64 + 2 * documents as u64,
        })
    }

    /// The `data` of a job result; `storage_hint` is the URL the result document lives at.
    pub fn result(&self, b: usize, j: usize) -> Value {
        let id = self.job_id(b, j);
        json!({
            "project_id": self.spec.project,
            "reference_id": self.job(b, j)["reference_id"],
            "job_id": id,
            "batch_id": self.ids[b],
            "status": if self.completed(b, j) { "completed" } else { "labelling" },
            "work_flow_id": format!("{:016x}", mix(self.spec.seed ^ b as u64)),
            "priority_weight": 5,
            "tag": "2aae1234-acac-1234-eeff-12a22a237bbc",
            "result": if self.completed(b, j) { format!("https://playment-data-uploads.s3.ap-south-1.amazonaws.com/results/{id}.json") } else { String::new() },
            "x_review": {"score": (j % 10) as f64 / 4.0, "note": "ok ✓"},
        })
    }

    /// The annotation document of a job.
    pub fn document(&self, b: usize, j: usize) -> Value {
        let annotations: Vec<Value> = (0..(1 + j % 4))
            .map(|k| json!({"label": LABELS[k % 3], "coordinates": [[k, j % 100], [k + 10, j % 100 + 5]], "attributes": {"occluded": k % 2 == 0}}))
            .collect();
        json!({"job_id": self.job_id(b, j), "version": 2, "annotations": annotations})
    }
}

const LABELS: [&str; 3] = ["car", "pedestrian", "sign"];

fn batch_id(seed: u64, b: usize) -> String {
    let h = mix(seed.wrapping_mul(31) ^ 0xba7c ^ (b as u64) << 20);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        b,
        (h >> 20) & 0xfff,
        (h >> 8) & 0xfff,
        mix(h) & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_is_found_by_its_id_and_batches_are_uneven() {
        let d = Dataset::new(DatasetSpec { jobs: 2_000, batches: 6, ..DatasetSpec::default() });
        assert_eq!(d.total_jobs(), 2_000);
        assert_eq!(d.batch_size(0), 0);
        assert_eq!(d.batch_size(1), 100);
        for b in 0..6 {
            for (j, id) in d.job_ids(b).iter().enumerate() {
                assert_eq!(d.locate(id), Some((b, j)));
            }
        }
        assert!(d.locate("nope").is_none());
    }
}
