using Shepherd.Engine.Formats;
using Shepherd.Engine.Pricing;
using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Shepherd.Client;
using Spectre.Console;
using BatchCounts = Shepherd.Engine.Model.BatchCounts;
using OutputCounts = Shepherd.Engine.Model.OutputCounts;
using TierCounts = Shepherd.Engine.Model.TierCounts;

namespace Shepherd.Cli.Running;

/// <summary>
/// How the remote commands show a batch: as a JSON object with snake_case fields for
/// <c>--json</c>, or as lines and tables for a person.
/// </summary>
internal static class RemoteOutput
{
    /// <summary>Writes one JSON document, made by <paramref name="write"/>, as one line of <paramref name="stdout"/>.</summary>
    public static async Task WriteJsonAsync(TextWriter stdout, Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        await using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
        {
            write(json);
        }

        await stdout.WriteLineAsync(Encoding.UTF8.GetString(buffer.WrittenSpan));
        await stdout.FlushAsync();
    }

    /// <summary>The batch object of <c>--json</c>; <paramref name="timedOut"/> is added by the commands that wait.</summary>
    public static void WriteBatch(Utf8JsonWriter json, Batch batch, bool? timedOut = null)
    {
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("status", batch.StatusName);
        if (timedOut is { } gaveUp)
        {
            json.WriteBoolean("timed_out", gaveUp);
        }

        json.WriteString("endpoint", batch.Endpoint);
        json.WriteString("model", batch.Model);
        var counts = Counts(batch);
        counts.WriteProgress(json);
        counts.WriteBudget(json);
        WriteTime(json, "created_at", batch.CreatedAt);
        WriteTime(json, "in_progress_at", batch.InProgressAt);
        WriteTime(json, "ended_at", batch.EndedAt);
        WriteTime(json, "expires_at", batch.ExpiresAt);
        json.WriteString("input_file_id", batch.InputFileId);
        json.WriteString("output_file_id", batch.OutputFileId);
        json.WriteString("error_file_id", batch.ErrorFileId);
        json.WriteStartObject("metadata");
        foreach (var (key, value) in batch.Metadata)
        {
            json.WriteString(key, value);
        }

        json.WriteEndObject();
        json.WriteObjects("errors", batch.Errors, static (json, error) =>
        {
            json.WriteString("code", error.Code);
            json.WriteString("message", error.Message);
            json.WriteNumberOrNull("line", error.Line);
        });
        json.WriteObjects("lanes", batch.Lanes, static (json, lane) =>
        {
            json.WriteString("upstream", lane.Upstream);
            json.WriteString("model", lane.Model);
            json.WriteString("state", lane.State);
            WriteTime(json, "since", lane.Since);
            json.WriteString("reason", lane.Reason);
            WriteTime(json, "next_probe_at", lane.NextProbeAt);
        });
        json.WriteEndObject();
    }

    /// <summary>
    /// The counts of a batch on a server, in the engine's shape, so they are written as the
    /// server's own dashboard writes them. The API counts cancelled and expired requests as
    /// failed too; here they are apart.
    /// </summary>
    private static BatchCounts Counts(Batch batch) =>
        new(batch.Total, batch.Succeeded, batch.Failed - batch.Cancelled - batch.Expired, batch.Cancelled, batch.Expired, batch.InputTokens, batch.OutputTokens, batch.CostUsd)
        {
            BudgetUsd = batch.BudgetUsd,
            BudgetExceeded = batch.BudgetExceededRequests,
            Tiers = new TierCounts(
                batch.Tiers.Realtime.Requests, batch.Tiers.Realtime.CostUsd, batch.Tiers.Native.Requests, batch.Tiers.Native.CostUsd,
                batch.Tiers.Flex.Requests, batch.Tiers.Flex.CostUsd, batch.Tiers.SavedUsd),
            Cached = batch.Cached,
            CacheSavedUsd = batch.CacheSavedUsd,
            Output = new OutputCounts(batch.Output.ValidFirst, batch.Output.ValidReasked, batch.Output.Invalid, batch.Output.Reasked, batch.Output.ReaskCostUsd),
        };

    /// <summary>The status in colour, for a terminal.</summary>
    public static string StatusMarkup(Batch batch)
    {
        var colour = batch.Status switch
        {
            BatchStatus.Completed => "green",
            BatchStatus.Failed or BatchStatus.Expired => "red",
            BatchStatus.Cancelling or BatchStatus.Cancelled => "yellow",
            _ => "blue",
        };
        return $"[{colour}]{Markup.Escape(batch.StatusName)}[/]";
    }

    public static string Percent(Batch batch) => string.Create(CultureInfo.InvariantCulture, $"{batch.Percent:0.0}%");

    public static string Count(long count) => count.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>
    /// How the requests of a batch ended, in the words every command uses: <c>821 succeeded, 3
    /// failed, 19,176 cancelled of 20,000</c> (cancelled and expired only when there are any).
    /// </summary>
    public static string Outcome(long succeeded, long failed, long cancelled, long expired, long? total)
    {
        var unsent = (cancelled > 0 ? $", {Count(cancelled)} cancelled" : "") + (expired > 0 ? $", {Count(expired)} expired" : "");
        return $"{Count(succeeded)} succeeded, {Count(failed)} failed{unsent}{(total is { } all ? $" of {Count(all)}" : "")}";
    }

    /// <summary><see cref="Outcome(long, long, long, long, long?)"/> of a batch on a server; without its total where the line says it already.</summary>
    public static string Outcome(Batch batch, bool withTotal = true) =>
        Outcome(batch.Succeeded, batch.Failed - batch.Cancelled - batch.Expired, batch.Cancelled, batch.Expired, withTotal ? batch.Total : null);

    /// <summary><c>1 request</c>, <c>2 requests</c>, <c>1,000 requests</c>: a count and its noun.</summary>
    public static string Plural(long count, string noun) => $"{Count(count)} {noun}{(count == 1 ? "" : "s")}";

    public static string Time(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture);

    /// <summary>How long the batch ran (or has run, by <paramref name="now"/>), from its start of sending.</summary>
    public static TimeSpan Duration(Batch batch, DateTimeOffset now)
    {
        var started = batch.InProgressAt ?? batch.CreatedAt;
        var ended = batch.EndedAt ?? now;
        return ended > started ? ended - started : TimeSpan.Zero;
    }

    /// <summary>
    /// The one-line outcome of an ended batch, with tokens and cost, and where its results are:
    /// what <c>wait</c> and <c>submit --wait</c> end with.
    /// </summary>
    public static async Task WriteSummaryAsync(TextWriter stdout, Batch batch, DateTimeOffset now)
    {
        var line = string.Create(CultureInfo.InvariantCulture,
            $"{batch.Id} {batch.StatusName}: {Outcome(batch)} in {ProgressDisplay.FormatDuration(Duration(batch, now))}");
        await stdout.WriteLineAsync(line);
        await stdout.WriteLineAsync($"  tokens:  {Count(batch.InputTokens)} in, {Count(batch.OutputTokens)} out · cost {Cost.Describe(batch.CostUsd)}");
        var counts = Counts(batch);
        if (counts.Tiers.Describe() is { } tiers)
        {
            await stdout.WriteLineAsync($"  tiers:   {tiers}");
        }

        if (counts.DescribeCached() is { } cached)
        {
            await stdout.WriteLineAsync($"  cached:  {cached}");
        }

        if (counts.Output.Describe() is { } output)
        {
            await stdout.WriteLineAsync($"  output:  {output}");
        }

        if (batch.BudgetUsd is { } budget)
        {
            await stdout.WriteLineAsync($"  budget:  {Budget(budget, batch.BudgetExceededRequests)}");
        }

        await stdout.WriteLineAsync($"  results: shepherd results {batch.Id} -o FILE");
    }

    /// <summary>Why a batch's input was refused, line by line, on <paramref name="stderr"/>.</summary>
    public static async Task WriteRefusedAsync(TextWriter stderr, Batch batch)
    {
        await stderr.WriteLineAsync($"{batch.Id} failed: the server refused its input, and nothing was sent. {batch.Errors.Count} problem{(batch.Errors.Count == 1 ? "" : "s")}:");
        foreach (var error in batch.Errors)
        {
            await stderr.WriteLineAsync($"  {ErrorText(error)}");
        }
    }

    /// <summary>A budget, and the requests it could no longer pay when there were any (<paramref name="where"/> says where they are).</summary>
    public static string Budget(decimal usd, long exceeded, string where = "budget_exceeded") => exceeded > 0
        ? $"{Cost.Describe(usd)}; {Plural(exceeded, "request")} not sent, as it could no longer pay them ({where})"
        : Cost.Describe(usd);

    public static string ErrorText(BatchError error) => error.Line is { } line
        ? string.Create(CultureInfo.InvariantCulture, $"line {line}: {error.Code}: {error.Message}")
        : $"{error.Code}: {error.Message}";

    /// <summary>Everything about a batch, as <c>shepherd status</c> shows it.</summary>
    public static void WriteDetails(IAnsiConsole console, Batch batch, DateTimeOffset now)
    {
        var grid = new Grid().AddColumn(new GridColumn().NoWrap().PadRight(3)).AddColumn();
        void Row(string name, string markup) => grid.AddRow(new Markup($"[bold]{name}[/]"), new Markup(markup));
        void Text(string name, string? value)
        {
            if (value is not null)
            {
                Row(name, Markup.Escape(value));
            }
        }

        Row("batch", $"{Markup.Escape(batch.Id)}  {StatusMarkup(batch)}");
        Text("endpoint", batch.Endpoint);
        Text("model", batch.Model);
        Text("progress", $"{Percent(batch)} · {Count(batch.Finished)} of {Count(batch.Total)} done: {Outcome(batch, withTotal: false)}");
        Text("tokens", $"{Count(batch.InputTokens)} in, {Count(batch.OutputTokens)} out");
        Text("cost", Cost.Describe(batch.CostUsd));
        var counts = Counts(batch);
        Text("tiers", counts.Tiers.Describe());
        Text("cached", counts.DescribeCached());
        Text("output", counts.Output.Describe());
        Text("budget", batch.BudgetUsd is { } budget ? Budget(budget, batch.BudgetExceededRequests) : null);
        Text("created", Time(batch.CreatedAt));
        Text("started", batch.InProgressAt is { } started ? Time(started) : null);
        Text("ended", batch.EndedAt is { } ended ? $"{Time(ended)} (ran {ProgressDisplay.FormatDuration(Duration(batch, now))})" : null);
        Text("expires", batch.ExpiresAt is { } expires && !batch.HasEnded ? Time(expires) : null);
        Text("input file", batch.InputFileId);
        Text("output file", batch.OutputFileId);
        Text("error file", batch.ErrorFileId);
        Text("metadata", batch.Metadata.Count == 0 ? null : string.Join(", ", batch.Metadata.Select(p => $"{p.Key}={p.Value}")));
        if (batch.Lanes.Count > 0)
        {
            Row("lanes", string.Join("\n", batch.Lanes.Select(lane => LaneTrouble.Of(lane) is { } trouble
                ? $"[red]{Markup.Escape(trouble.Describe(now))}[/]"
                : Markup.Escape($"{lane.Upstream} · {lane.Model}: {lane.State}"))));
        }

        console.Write(grid);
        if (batch.Errors.Count > 0)
        {
            console.MarkupLine(batch.Status == BatchStatus.Failed ? "[red]The input was refused; nothing was sent:[/]" : "Errors:");
            foreach (var error in batch.Errors)
            {
                console.MarkupLine("  " + Markup.Escape(ErrorText(error)));
            }
        }
    }

    private static void WriteTime(Utf8JsonWriter json, string name, DateTimeOffset? at)
    {
        if (at is { } time)
        {
            json.WriteString(name, time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
