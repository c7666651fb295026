using Microsoft.Extensions.Time.Testing;
using Shepherd.Cli.Running;
using Shepherd.Testing;
using Spectre.Console;

namespace Shepherd.Cli.Tests;

/// <summary>What the progress display writes: a live bar that fits the terminal, plain lines that say something new.</summary>
public sealed class ProgressDisplayTests
{
    private static readonly ProgressSample Busy = new(Total: 1_234_567, Succeeded: 456_789, Failed: 1_234, InputTokens: 98_765_432, OutputTokens: 12_345_678, InFlight: 32, Retries: 5_678)
    {
        CostUsd = 123.4567m,
        Trouble = "gpt-4.1-mini@api.openai.com: down for 2m10s (connection refused)",
    };

    [Theory]
    [InlineData(40)]
    [InlineData(50)]
    [InlineData(80)]
    [InlineData(200)]
    public void TheLiveBarsFigures_FitTheWidthTheyAreGiven_KeepingTheCountAndTheTrouble(int width)
    {
        var line = ProgressDisplay.Describe(Busy, rate: 1234.5, width);

        Assert.InRange(line.Length, 1, width);
        Assert.StartsWith("458,023/1,234,567", line, StringComparison.Ordinal);
        if (width >= 80)
        {
            Assert.Contains("down for 2m10s", line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void APlainLine_HasEveryFigure()
    {
        var line = ProgressDisplay.Describe(Busy, rate: 1234.5, width: null);

        foreach (var figure in new[] { "458,023/1,234,567 done", "1,234 failed", "1234.5 req/s", "111M tokens", "$123.46 (~$", "projected)", "32 in flight", "5,678 retries", "ETA", "down for 2m10s" })
        {
            Assert.Contains(figure, line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task PlainLines_AreNotRepeated_WhileNothingMoves()
    {
        var time = new FakeTimeProvider();
        var plain = new StringWriter();
        var display = new ProgressDisplay(AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(new StringWriter()) }), plain, ProgressMode.Plain, time);
        var done = new TaskCompletionSource();
        var sample = new ProgressSample(10, 2, 0, 100, 50, 0, 0) { Remote = new RemoteFigures("in_progress", null) };

        var showing = display.ShowAsync("batch", done.Task, () => Task.FromResult(sample));
        for (var look = 0; look < 6; look++)
        {
            await Task.Yield();
            time.Advance(TimeSpan.FromSeconds(5));
        }

        sample = sample with { Succeeded = 5 };
        time.Advance(TimeSpan.FromSeconds(5));
        done.SetResult();
        await time.RunUntilAsync(showing, TimeSpan.FromSeconds(5));

        var lines = plain.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Contains("2/10 done", lines[0], StringComparison.Ordinal);
        Assert.Contains("5/10 done", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void ALine_SaysReconnecting_WhileTheServerCannotBeReached_AndProjectsCostFromSuccesses()
    {
        var sample = new ProgressSample(100, 1, 9, 100, 50, 0, 0) { CostUsd = 0.01m, Remote = new RemoteFigures("in_progress", null, Reconnecting: true) };

        var plain = ProgressDisplay.Describe(sample, rate: 0, width: null);
        var live = ProgressDisplay.Describe(sample, rate: 0, width: 40);

        Assert.Contains("reconnecting", plain, StringComparison.Ordinal);
        Assert.Contains("reconnecting", live, StringComparison.Ordinal);
        Assert.Contains("(~$0.91 projected)", plain, StringComparison.Ordinal);
    }
}
