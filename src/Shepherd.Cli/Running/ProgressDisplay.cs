using System.Globalization;
using Shepherd.Engine.Pricing;
using Spectre.Console;

namespace Shepherd.Cli.Running;

/// <summary>One look at a running batch.</summary>
internal readonly record struct ProgressSample(long Total, long Succeeded, long Failed, long InputTokens, long OutputTokens, long InFlight, long Retries)
{
    public long Finished => Succeeded + Failed;

    /// <summary>What the answers so far cost, in US dollars.</summary>
    public decimal CostUsd { get; init; }

    /// <summary>
    /// The cost so far and, while requests remain, the total it points to: the requests left at
    /// the cost per success so far (failures cost nothing, so they do not make it $0).
    /// </summary>
    public string DescribeCost()
    {
        var spent = Cost.Describe(CostUsd);
        return Succeeded > 0 && Finished < Total ? $"{spent} (~{Cost.Describe(CostUsd + (CostUsd / Succeeded * (Total - Finished)))} projected)" : spent;
    }

    /// <summary>What a server says of a batch watched from afar; null for a batch sent from here, whose rate is measured here.</summary>
    public RemoteFigures? Remote { get; init; }

    /// <summary>Lanes that do not send (an upstream that is down, a refused key), in words; null while every lane sends.</summary>
    public string? Trouble { get; init; }
}

/// <summary>A remote batch's figures, as the client reports them while waiting: its status, and the ETA at the rate seen so far.</summary>
/// <param name="Status">The status as the API spells it.</param>
/// <param name="Eta">The time left at the rate seen so far; null until there is a rate.</param>
/// <param name="Reconnecting">True while the client cannot reach the server and keeps trying.</param>
internal sealed record RemoteFigures(string Status, TimeSpan? Eta, bool Reconnecting = false);

/// <summary>
/// Shows a running batch: a live bar (done, failed, requests/s, tokens, ETA) on a terminal, or
/// a plain line every few seconds when the output is a file or a pipe.
/// </summary>
internal sealed class ProgressDisplay(IAnsiConsole console, TextWriter plain, ProgressMode mode, TimeProvider time)
{
    private static readonly TimeSpan LiveInterval = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(5);

    /// <summary>What the live bar leaves for its figures: the terminal's width less the bar (20), the percentage and the spinner.</summary>
    private int DescriptionWidth => Math.Max(20, console.Profile.Width - 20 - 6 - 4 - 3);

    /// <summary>
    /// <see cref="ProgressMode.Auto"/> made concrete: a live bar on an interactive terminal, plain
    /// lines when stdout is a file or a pipe or carries <c>--json</c> (the lines then go to stderr).
    /// </summary>
    public static ProgressMode Resolve(ProgressMode chosen, bool json, IAnsiConsole console) => chosen switch
    {
        ProgressMode.Auto when json => ProgressMode.Plain,
        ProgressMode.Auto => console.Profile.Capabilities.Interactive && !Console.IsOutputRedirected ? ProgressMode.Live : ProgressMode.Plain,
        _ => chosen,
    };

    /// <summary>Shows progress until <paramref name="work"/> ends, reading it with <paramref name="sample"/>.</summary>
    public async Task ShowAsync(string label, Task work, Func<Task<ProgressSample>> sample)
    {
        var meter = new RateMeter(RateWindow, time);
        meter.Add(time.GetTimestamp(), (await sample()).Finished);
        switch (mode)
        {
            case ProgressMode.None:
                await WhenEnded(work);
                break;
            case ProgressMode.Live:
                await console.Progress()
                    .AutoClear(false)
                    .Columns(new ProgressBarColumn { Width = 20 }, new PercentageColumn(), new TaskDescriptionColumn { Alignment = Justify.Left }, new SpinnerColumn())
                    .StartAsync(async context =>
                    {
                        // Spectre refuses an empty name; the description below replaces it at once.
                        var task = context.AddTask(Markup.Escape(label));
                        while (true)
                        {
                            var now = await sample();
                            task.MaxValue = Math.Max(1, now.Total);
                            task.Value = now.Finished;
                            task.Description = Markup.Escape(Describe(now, meter.Add(time.GetTimestamp(), now.Finished), DescriptionWidth));
                            if (work.IsCompleted)
                            {
                                break;
                            }

                            await Task.WhenAny(work, Task.Delay(LiveInterval, time));
                        }
                    });
                break;
            default:
                string? last = null;
                while (!work.IsCompleted)
                {
                    await Task.WhenAny(work, Task.Delay(PlainInterval, time));
                    var now = await sample();
                    // A remote batch still validating has no requests counted yet: it is at the start, not the end.
                    var percent = now.Total == 0 ? (now.Remote is null ? 100 : 0) : 100.0 * now.Finished / now.Total;
                    var line = string.Create(CultureInfo.InvariantCulture, $"[{percent,5:0.0}%] {label}  {Describe(now, meter.Add(time.GetTimestamp(), now.Finished), width: null)}");
                    // A batch that did not move since the last line (a server's batch waiting its turn) is not said again.
                    if (line != last)
                    {
                        await plain.WriteLineAsync(line);
                        await plain.FlushAsync();
                        last = line;
                    }
                }

                break;
        }
    }

    private static async Task WhenEnded(Task work)
    {
        try
        {
            await work;
        }
        catch (Exception)
        {
            // The caller awaits the work itself and reports its failure.
        }
    }

    /// <summary>
    /// The figures of <paramref name="now"/>, in full for a plain line, or for the live bar in at
    /// most <paramref name="width"/> characters: the least needed figures are left out until the
    /// line fits, so it never wraps (a wrapped live bar repeats itself down the terminal).
    /// </summary>
    internal static string Describe(ProgressSample now, double rate, int? width)
    {
        var parts = Figures(now, rate, compact: width is not null);
        var line = string.Join(" · ", parts.Select(p => p.Text));
        while (width is { } most && line.Length > most && parts.Any(p => p.Keep < Always))
        {
            parts.Remove(parts.Where(p => p.Keep < Always).MinBy(p => p.Keep));
            line = string.Join(" · ", parts.Select(p => p.Text));
        }

        return width is { } fit && line.Length > fit ? line[..Math.Max(0, fit - 1)] + "…" : line;
    }

    /// <summary>How much the count and a lane's trouble are needed: they are never left out, only cut short.</summary>
    private const int Always = 10;

    /// <summary>The figures in their order, each with how much it is needed (higher is kept longer).</summary>
    private static List<(string Text, int Keep)> Figures(ProgressSample now, double rate, bool compact)
    {
        var c = CultureInfo.InvariantCulture;
        var tokens = FormatCount(now.InputTokens + now.OutputTokens);
        var remote = now.Remote;
        var remaining = now.Total - now.Finished;
        var eta = remote is not null
            ? remote.Eta is { } left ? FormatDuration(left) : now.Total > 0 && remaining == 0 ? "0s" : "–"
            : rate > 0 && remaining > 0 ? FormatDuration(TimeSpan.FromSeconds(remaining / rate)) : remaining == 0 ? "0s" : "–";
        var parts = new List<(string Text, int Keep)>();
        if (remote is not null && !compact)
        {
            parts.Add((remote.Status, 9));
        }

        if (remote is { Reconnecting: true })
        {
            parts.Add(("reconnecting", Always));
        }

        parts.Add((string.Create(c, $"{now.Finished:N0}/{now.Total:N0}{(compact ? "" : " done")}"), Always));
        parts.Add((string.Create(c, $"{now.Failed:N0} failed"), now.Failed > 0 ? 8 : 2));
        if (remote is null)
        {
            parts.Add((rate.ToString(compact ? "0" : "0.0", c) + " req/s", 5));
        }

        parts.Add(($"{tokens} {(compact ? "tok" : "tokens")}", 3));
        parts.Add((now.DescribeCost(), 6));
        if (remote is null && !compact)
        {
            parts.Add((string.Create(c, $"{now.InFlight} in flight"), 4));
            parts.Add((string.Create(c, $"{now.Retries:N0} {(now.Retries == 1 ? "retry" : "retries")}"), 4));
        }

        parts.Add(($"ETA {eta}", 7));
        if (now.Trouble is { } trouble)
        {
            parts.Add((trouble, Always));
        }

        return parts;
    }

    /// <summary>A count in a few characters: <c>9,876</c>, <c>18.5k</c>, <c>185k</c>, <c>1.85M</c>, <c>2.10B</c> (three significant digits from ten thousand).</summary>
    public static string FormatCount(long count)
    {
        if (count < 10_000)
        {
            return count.ToString("N0", CultureInfo.InvariantCulture);
        }

        var (scaled, unit) = count switch
        {
            >= 1_000_000_000 => (count / 1e9, "B"),
            >= 1_000_000 => (count / 1e6, "M"),
            _ => (count / 1e3, "k"),
        };
        // Rounding may reach the next unit: 999,950 is 1.00M, not 1000k.
        if (Math.Round(scaled, scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2) >= 1000 && unit != "B")
        {
            (scaled, unit) = (scaled / 1000, unit == "k" ? "M" : "B");
        }

        var format = scaled >= 100 ? "0" : scaled >= 10 ? "0.0" : "0.00";
        return scaled.ToString(format, CultureInfo.InvariantCulture) + unit;
    }

    public static string FormatDuration(TimeSpan duration) =>
        duration.TotalHours >= 1 ? $"{(int)duration.TotalHours}h{duration.Minutes:00}m"
        : duration.TotalMinutes >= 1 ? $"{(int)duration.TotalMinutes}m{duration.Seconds:00}s"
        : $"{Math.Ceiling(duration.TotalSeconds):0}s";

    /// <summary>Requests finished per second over a sliding window of samples.</summary>
    private sealed class RateMeter(TimeSpan window, TimeProvider time)
    {
        private readonly Queue<(long Timestamp, long Finished)> _samples = new();

        public double Add(long timestamp, long finished)
        {
            _samples.Enqueue((timestamp, finished));
            while (_samples.Count > 2 && time.GetElapsedTime(_samples.Peek().Timestamp, timestamp) > window)
            {
                _samples.Dequeue();
            }

            var (firstTime, firstFinished) = _samples.Peek();
            var seconds = time.GetElapsedTime(firstTime, timestamp).TotalSeconds;
            return seconds > 0 ? (finished - firstFinished) / seconds : 0;
        }
    }
}
