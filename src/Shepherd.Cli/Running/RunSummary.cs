using System.Diagnostics;
using System.Globalization;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;

namespace Shepherd.Cli.Running;

/// <summary>
/// The last thing <c>shepherd run</c> prints: a few lines for a person, or with <c>--json</c> one
/// object for a script, with the same counts either way.
/// </summary>
internal sealed class RunSummary(bool json, TextWriter stdout)
{
    /// <summary>Says how the run ended: the batch's counts, this run's rate and phases, tokens, cost, budget and the result files.</summary>
    public async Task WriteAsync(BatchRecord batch, ExportSummary exported, RunPhases phases, long finishedThisRun, long retried, DispatchCounters counters, ResultFiles files, CarriedOver? carried)
    {
        var (outputPath, errorsPath) = (files.OutputPath, files.ErrorsPath);
        var wall = phases.Dispatch;
        var seconds = Math.Max(wall.TotalSeconds, 1e-6);
        var rate = finishedThisRun / seconds;
        var counts = BatchCounts.Of(batch);
        if (json)
        {
            await RemoteOutput.WriteJsonAsync(stdout, writer =>
            {
                writer.WriteStartObject();
                writer.WriteString("batch_id", batch.Id);
                writer.WriteString("status", BatchStatusWords.Of(batch.Status));
                counts.WriteOutcome(writer);
                counts.WriteBudget(writer);
                writer.WriteString("mode", BatchModeWords.Of(batch.Mode));
                if (carried is { } kept)
                {
                    // An edited input: what it kept of its earlier batch, what it sent, and what it no longer has.
                    writer.WriteStartObject("edited");
                    writer.WriteNumber("reused", kept.Reused);
                    writer.WriteNumber("sent", batch.Total - kept.Reused);
                    writer.WriteNumber("dropped", kept.Dropped);
                    writer.WriteEndObject();
                }

                writer.WriteNumber("finished_this_run", finishedThisRun);
                writer.WriteNumber("retried_failed", retried);
                writer.WriteNumber("wall_seconds", Math.Round(wall.TotalSeconds, 3));
                writer.WriteNumber("requests_per_second", Math.Round(rate, 1));
                writer.WriteNumber("import_seconds", Math.Round(phases.Import.TotalSeconds, 3));
                writer.WriteNumber("export_seconds", Math.Round(phases.Export.TotalSeconds, 3));
                writer.WriteNumber("attempts", counters.Attempts);
                writer.WriteNumber("retries", counters.Retries);
                writer.WriteNumber("requeued", counters.Requeued);
                writer.WriteNumber("rate_limited", counters.RateLimited);
                using var self = Process.GetCurrentProcess();
                writer.WriteNumber("peak_working_set_bytes", self.PeakWorkingSet64);
                writer.WriteNumber("cpu_seconds", Math.Round(self.TotalProcessorTime.TotalSeconds, 3));
                writer.WriteString("output", outputPath);
                writer.WriteString("errors", errorsPath);
                writer.WriteEndObject();
            });
            return;
        }

        var line = $"{batch.Id} {BatchStatusWords.Of(batch.Status)}: {RemoteOutput.Outcome(batch.Succeeded, batch.Failed, batch.Cancelled, batch.Expired, batch.Total)}";
        await stdout.WriteLineAsync(finishedThisRun > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{line} in {ProgressDisplay.FormatDuration(wall)} ({rate:0.0} requests/s, {RemoteOutput.Count(counters.Retries)} {(counters.Retries == 1 ? "retry" : "retries")})")
            : line);
        if (carried is { } edited)
        {
            await stdout.WriteLineAsync(
                $"  edited:  {RemoteOutput.Count(edited.Reused)} unchanged answers kept, {RemoteOutput.Count(batch.Total - edited.Reused)} sent, {RemoteOutput.Count(edited.Dropped)} dropped");
        }

        if (counts.DescribeCached() is { } cached)
        {
            await stdout.WriteLineAsync($"  cached:  {cached}");
        }

        if (counts.Output.Describe() is { } checks)
        {
            await stdout.WriteLineAsync($"  output:  {checks}");
        }

        if (retried > 0)
        {
            await stdout.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  retried: {RemoteOutput.Plural(retried, "request")} that had failed or expired"));
        }

        await stdout.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  tokens:  {batch.InputTokens:N0} in, {batch.OutputTokens:N0} out"));
        var unpriced = batch.Unpriced > 0 ? $" ({RemoteOutput.Plural(batch.Unpriced, "answer")} of models without a price count as $0)" : "";
        await stdout.WriteLineAsync($"  cost:    {Cost.Describe(batch.CostNanos)}{unpriced}");
        if (batch.Mode != BatchMode.Realtime || batch.Tiers != TierTally.None)
        {
            var tiers = counts.Tiers.Describe() ?? "every answer in realtime";
            await stdout.WriteLineAsync($"  mode:    {BatchModeWords.Of(batch.Mode)}: {tiers}");
        }

        if (batch.BudgetNanos is { } limit)
        {
            await stdout.WriteLineAsync($"  budget:  {RemoteOutput.Budget(Cost.ToUsd(limit), batch.BudgetExceeded, "budget_exceeded in the errors file")}");
        }

        await stdout.WriteLineAsync($"  results: {ShownPath.Of(outputPath)} ({(exported.Rows is { } rows ? RemoteOutput.Plural(rows, "row") : RemoteOutput.Plural(exported.Succeeded, "line"))})");
        await stdout.WriteLineAsync($"  errors:  {ShownPath.Of(errorsPath)} ({RemoteOutput.Plural(exported.Failed, "line")})");
    }
}

/// <summary>How long each phase of one <c>shepherd run</c> took.</summary>
/// <param name="Import">Reading the input into the store; zero when a stored batch resumed.</param>
/// <param name="Dispatch">Sending, until the batch ended.</param>
/// <param name="Export">Writing the output and error files from the store.</param>
internal readonly record struct RunPhases(TimeSpan Import, TimeSpan Dispatch, TimeSpan Export);
