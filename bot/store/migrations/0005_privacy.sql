-- Privacy (bot/privacy.py): images are deleted some days after their job; the row stays and says so.

-- When the job's image files (its folder, and the upload it started from) were deleted by retention
-- pruning; NULL while they are kept. Its prompt and recipes stay, so a re-roll still works.
ALTER TABLE jobs ADD COLUMN images_pruned_at REAL;

-- Finished jobs whose images are still kept, oldest first: what each pruning pass looks at.
CREATE INDEX jobs_to_prune ON jobs (finished_at)
WHERE images_pruned_at IS NULL AND status IN ('done', 'failed', 'cancelled');
