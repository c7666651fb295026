using System.Text;
using System.Text.Json;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// An input edited after its batch ran: <c>shepherd run</c> of <c>--requests</c> requests once,
/// then <c>--changed-percent</c> of their prompts changed (same custom ids, spread evenly over the
/// file), then run again as it is (only the changed requests sent, the others' answers kept) and
/// once more with <c>--fresh</c> (everything sent again). All three against one fast, unlimited
/// simulator; each row counts what the provider received during that run alone.
/// </summary>
internal static class EditScenario
{
    // The part of every prompt an edit rewrites (Workload.Create's text); the review number before it keeps each body distinct.
    private const string Before = "arrived late, works well.";
    private const string After = "arrived early, stopped working.";

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 100_000);
        var percent = args.Int("changed-percent", 1);
        var concurrency = args.Int("concurrency", 64);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegative(percent);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percent, 100);
        using var workload = Workload.Create(count, keepBodies: false);
        var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1) };
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(3)), 0, CancellationToken.None);
        var more = new[] { "--concurrency", ShepherdRun.Text(concurrency) };

        var first = await MeasureAsync("first", server, () => ShepherdRun.StartAsync(workload.Path, server.BaseUrl, more));
        Expect(first, sent: count, cachedLines: 0, count);

        var changed = Edit(workload.Path, i => Picked(i, percent));
        await Console.Error.WriteLineAsync($"changed the prompts of {changed} of {count} requests");

        var edited = await MeasureAsync("edited", server, () => ShepherdRun.AgainAsync(workload.Path, server.BaseUrl, more));
        Expect(edited, sent: changed, cachedLines: count - changed, count);
        if (edited.Reused != count - changed || edited.Dropped != 0 || edited.Sent != changed)
        {
            throw new InvalidOperationException(
                $"The edited run reported {edited.Reused} reused, {edited.Sent} sent, {edited.Dropped} dropped; expected {count - changed}, {changed}, 0.");
        }

        var fresh = await MeasureAsync("fresh", server, () => ShepherdRun.StartAsync(workload.Path, server.BaseUrl, more));
        Expect(fresh, sent: count, cachedLines: 0, count);

        return new
        {
            Scenario = "edit",
            Machine = Machine.Describe(),
            Requests = count,
            ChangedPercent = percent,
            Changed = changed,
            Concurrency = concurrency,
            SimulatorLatencyMs = options.Latency.TotalMilliseconds,
            Rows = new[] { first, edited, fresh },
        };
    }

    /// <summary>Whether request <paramref name="index"/> is one of <paramref name="percent"/>%, picked at even steps through the file.</summary>
    private static bool Picked(int index, int percent) => (index + 1L) * percent / 100 > (long)index * percent / 100;

    /// <summary>Rewrites the prompt of each request <paramref name="picked"/> chooses, keeping its custom id; returns how many changed.</summary>
    private static int Edit(string path, Func<int, bool> picked)
    {
        var editing = path + ".editing";
        var changed = 0;
        using (var writer = new StreamWriter(editing, false, new UTF8Encoding(false), 1 << 16))
        {
            var index = 0;
            foreach (var line in File.ReadLines(path))
            {
                var text = line;
                if (picked(index))
                {
                    text = line.Replace(Before, After, StringComparison.Ordinal);
                    if (text == line)
                    {
                        throw new InvalidOperationException($"Line {index + 1} of {path} has no '{Before}' to change.");
                    }

                    changed++;
                }

                writer.Write(text);
                writer.Write('\n');
                index++;
            }
        }

        File.Move(editing, path, overwrite: true);
        return changed;
    }

    /// <summary>Runs one <c>shepherd run</c> and reads its figures, with the requests the provider received meanwhile.</summary>
    private static async Task<EditRow> MeasureAsync(string name, SimulatorServer server, Func<Task<ShepherdRun>> start)
    {
        var before = server.Provider.Stats().Requests;
        var run = await start();
        var received = server.Provider.Stats().Requests - before;
        var summary = run.Summary;
        var (reused, sent, dropped) = summary.TryGetProperty("edited", out var edited)
            ? (edited.GetProperty("reused").GetInt64(), edited.GetProperty("sent").GetInt64(), edited.GetProperty("dropped").GetInt64())
            : (0, run.Number("total"), 0);
        var (lines, cachedLines) = CountLines(summary.GetProperty("output").GetString()!);
        var row = new EditRow(
            name,
            received,
            run.WallSeconds,
            run.Seconds("import_seconds"),
            run.DispatchSeconds,
            run.Seconds("export_seconds"),
            summary.GetProperty("cost_usd").GetDecimal(),
            reused,
            sent,
            dropped,
            run.Number("cached"),
            summary.GetProperty("cache_saved_usd").GetDecimal(),
            run.Number("succeeded"),
            run.Number("failed"),
            lines,
            cachedLines);
        await Console.Error.WriteLineAsync(
            $"{name}: provider received {received}, {row.WallSeconds:0.0} s (import {row.ImportSeconds:0.0}, dispatch {row.DispatchSeconds:0.0}, export {row.ExportSeconds:0.0}, other {row.OtherSeconds:0.0}), " +
            $"${row.CostUsd}, {reused} kept (${row.CacheSavedUsd} saved), {sent} sent, {dropped} dropped, {lines} output lines");
        return row;
    }

    /// <summary>The output file's lines, and those of answers kept from an earlier run (<c>"cached": true</c>).</summary>
    private static (long Lines, long Cached) CountLines(string output)
    {
        var (lines, cached) = (0L, 0L);
        foreach (var line in File.ReadLines(output))
        {
            using var document = JsonDocument.Parse(line);
            lines++;
            if (document.RootElement.TryGetProperty("cached", out var mark) && mark.GetBoolean())
            {
                cached++;
            }
        }

        return (lines, cached);
    }

    /// <summary>Throws unless the run sent <paramref name="sent"/> requests, answered all <paramref name="count"/> and wrote them, <paramref name="cachedLines"/> of them kept.</summary>
    private static void Expect(EditRow row, long sent, long cachedLines, long count)
    {
        if (row.ProviderReceived != sent || row.Succeeded != count || row.Failed != 0 || row.OutputLines != count || row.CachedLines != cachedLines)
        {
            throw new InvalidOperationException(
                $"The {row.Run} run: the provider received {row.ProviderReceived} requests (expected {sent}), {row.Succeeded} succeeded and {row.Failed} failed of {count}, " +
                $"{row.OutputLines} output lines (expected {count}), {row.CachedLines} of them kept (expected {cachedLines}).");
        }
    }
}

/// <summary>One <c>shepherd run</c> of the edit scenario.</summary>
/// <param name="Run"><c>first</c>, <c>edited</c> (without <c>--fresh</c>) or <c>fresh</c>.</param>
/// <param name="ProviderReceived">Requests the simulator received during this run.</param>
/// <param name="WallSeconds">The process from start to exit, with import and export.</param>
/// <param name="ImportSeconds">Reading the input into the state file (for the edited run, with matching it to the earlier batch).</param>
/// <param name="DispatchSeconds">Sending, from the run's own summary.</param>
/// <param name="ExportSeconds">Writing the output files.</param>
/// <param name="CostUsd">What this run's answers cost.</param>
/// <param name="Reused">Answers kept from the earlier batch.</param>
/// <param name="Sent">Requests the run had to send.</param>
/// <param name="Dropped">Requests of the earlier batch no longer in the file.</param>
/// <param name="Cached">Answers the summary counts as kept.</param>
/// <param name="CacheSavedUsd">What the kept answers cost when they were bought.</param>
/// <param name="Succeeded">Requests answered.</param>
/// <param name="Failed">Requests not answered.</param>
/// <param name="OutputLines">Lines in the output file.</param>
/// <param name="CachedLines">Output lines marked <c>"cached": true</c>.</param>
internal sealed record EditRow(
    string Run,
    long ProviderReceived,
    double WallSeconds,
    double ImportSeconds,
    double DispatchSeconds,
    double ExportSeconds,
    decimal CostUsd,
    long Reused,
    long Sent,
    long Dropped,
    long Cached,
    decimal CacheSavedUsd,
    long Succeeded,
    long Failed,
    long OutputLines,
    long CachedLines)
{
    /// <summary>The wall time outside import, dispatch and export: the process starting, checking the state file against the input, and carrying kept answers over.</summary>
    public double OtherSeconds => Math.Round(WallSeconds - ImportSeconds - DispatchSeconds - ExportSeconds, 3);
}
