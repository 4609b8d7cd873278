// Package artifacts keeps the files of jobs on disk under the build root:
// the job log at <root>/jobs/<id>/log and kept files under
// <root>/jobs/<id>/artifacts/. Files implements mixmaster.LogStore.
package artifacts
