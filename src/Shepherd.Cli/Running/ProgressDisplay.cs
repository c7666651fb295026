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

    /// <summary>The cost so far and, while requests remain, the total it points to at the same cost per request.</summary>
    public string DescribeCost()
    {
        var spent = Cost.Describe(CostUsd);
        return Finished > 0 && Finished < Total ? $"{spent} (~{Cost.Describe(CostUsd / Finished * Total)} projected)" : spent;
    }

    /// <summary>What a server says of a batch watched from afar; null for a batch sent from here, whose rate is measured here.</summary>
    public RemoteFigures? Remote { get; init; }

    /// <summary>Lanes that do not send (an upstream that is down, a refused key), in words; null while every lane sends.</summary>
    public string? Trouble { get; init; }
}

/// <summary>A remote batch's figures, as the client reports them while waiting: its status, and the ETA at the rate seen so far.</summary>
/// <param name="Status">The status as the API spells it.</param>
/// <param name="Eta">The time left at the rate seen so far; null until there is a rate.</param>
internal sealed record RemoteFigures(string Status, TimeSpan? Eta);

/// <summary>
/// Shows a running batch: a live bar (done, failed, requests/s, tokens, ETA) on a terminal, or
/// a plain line every few seconds when the output is a file or a pipe.
/// </summary>
internal sealed class ProgressDisplay(IAnsiConsole console, TextWriter plain, ProgressMode mode, TimeProvider time)
{
    private static readonly TimeSpan LiveInterval = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(5);

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
                            task.Description = Markup.Escape(Describe(now, meter.Add(time.GetTimestamp(), now.Finished), compact: true));
                            if (work.IsCompleted)
                            {
                                break;
                            }

                            await Task.WhenAny(work, Task.Delay(LiveInterval, time));
                        }
                    });
                break;
            default:
                while (!work.IsCompleted)
                {
                    await Task.WhenAny(work, Task.Delay(PlainInterval, time));
                    var now = await sample();
                    // A remote batch still validating has no requests counted yet: it is at the start, not the end.
                    var percent = now.Total == 0 ? (now.Remote is null ? 100 : 0) : 100.0 * now.Finished / now.Total;
                    await plain.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"[{percent,5:0.0}%] {label}  {Describe(now, meter.Add(time.GetTimestamp(), now.Finished), compact: false)}"));
                    await plain.FlushAsync();
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

    private static string Describe(ProgressSample now, double rate, bool compact)
    {
        var figures = DescribeFigures(now, rate, compact);
        return now.Trouble is { } trouble ? $"{figures} · {trouble}" : figures;
    }

    private static string DescribeFigures(ProgressSample now, double rate, bool compact)
    {
        if (now.Remote is { } remote)
        {
            return DescribeRemote(now, remote, compact);
        }

        var remaining = now.Total - now.Finished;
        var eta = rate > 0 && remaining > 0 ? FormatDuration(TimeSpan.FromSeconds(remaining / rate)) : remaining == 0 ? "0s" : "–";
        var tokens = FormatCount(now.InputTokens + now.OutputTokens);
        return compact
            ? string.Create(CultureInfo.InvariantCulture, $"{now.Finished:N0}/{now.Total:N0} · {now.Failed:N0} failed · {rate:0} req/s · {tokens} tok · {now.DescribeCost()} · ETA {eta}")
            : string.Create(CultureInfo.InvariantCulture,
                $"{now.Finished:N0}/{now.Total:N0} done · {now.Failed:N0} failed · {rate:0.0} req/s · {tokens} tokens · {now.DescribeCost()} · {now.InFlight} in flight · {now.Retries:N0} retries · ETA {eta}");
    }

    /// <summary>A batch on a server: the ETA is the client's, the cost the server's, and in-flight requests and retries are not known here.</summary>
    private static string DescribeRemote(ProgressSample now, RemoteFigures remote, bool compact)
    {
        var eta = remote.Eta is { } left ? FormatDuration(left) : now.Total > 0 && now.Finished == now.Total ? "0s" : "–";
        var tokens = FormatCount(now.InputTokens + now.OutputTokens);
        var cost = now.DescribeCost();
        return compact
            ? string.Create(CultureInfo.InvariantCulture, $"{now.Finished:N0}/{now.Total:N0} · {now.Failed:N0} failed · {tokens} tok · {cost} · ETA {eta}")
            : string.Create(CultureInfo.InvariantCulture,
                $"{remote.Status} · {now.Finished:N0}/{now.Total:N0} done · {now.Failed:N0} failed · {tokens} tokens · {cost} · ETA {eta}");
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
