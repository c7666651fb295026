using System.Globalization;
using Shepherd.Cli.Commands;
using Shepherd.Client;

namespace Shepherd.Cli.Running;

/// <summary>
/// Waits for a batch on a server, as <c>shepherd wait</c> and <c>shepherd submit --wait</c> do:
/// the progress the client reports goes to a <see cref="ProgressDisplay"/> (a live bar on a
/// terminal, a plain line every 5 s otherwise), and the end is a summary and an exit code.
/// </summary>
internal sealed class RemoteWait(RemoteContext context, ProgressMode progress)
{
    /// <summary>
    /// Without <c>--timeout</c> the wait lasts until the batch ends: the server ends it when its
    /// completion window passes, so this only has to be longer than any window.
    /// </summary>
    private static readonly TimeSpan UntilEnded = TimeSpan.FromDays(3650);

    /// <summary>
    /// Waits for <paramref name="seen"/> to end and reports how it ended. Exit codes as
    /// <c>run</c>'s: 0 every request succeeded, 3 some failed, expired or were cancelled, 2 the
    /// input was refused; 4 when <paramref name="timeout"/> passed first, 130 when interrupted
    /// (the batch goes on in both cases).
    /// </summary>
    public async Task<int> WaitAsync(Batch seen, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var latest = new LatestProgress(new BatchProgress(seen, null));
        var work = context.Client.WaitForCompletionAsync(seen.Id, latest, timeout ?? UntilEnded, cancellationToken);
        var mode = ProgressDisplay.Resolve(progress, context.Json, context.Console);
        var display = new ProgressDisplay(context.Console, context.Json ? context.Stderr : context.Stdout, mode, context.Time);
        await display.ShowAsync(seen.Id, work, () => Task.FromResult(Sample(latest.Value)));

        BatchCompletion completion;
        try
        {
            completion = await work;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            var last = latest.Value.Batch;
            await context.Stderr.WriteLineAsync($"Stopped waiting: {last.Id} is {last.StatusName} ({Done(last)}) and goes on on the server. Run 'shepherd wait {last.Id}' to wait again.");
            return ExitCodes.Interrupted;
        }

        var batch = completion.Batch;
        if (context.Json)
        {
            await RemoteOutput.WriteJsonAsync(context.Stdout, json => RemoteOutput.WriteBatch(json, batch, completion.TimedOut));
        }

        if (completion.TimedOut)
        {
            await context.Stderr.WriteLineAsync(
                $"Stopped waiting after {ProgressDisplay.FormatDuration(timeout ?? UntilEnded)}: {batch.Id} is still {batch.StatusName} ({Done(batch)}) and goes on on the server. Run 'shepherd wait {batch.Id}' to wait again.");
            return ExitCodes.StillRunning;
        }

        if (batch.Status == BatchStatus.Failed)
        {
            if (!context.Json)
            {
                await RemoteOutput.WriteRefusedAsync(context.Stderr, batch);
            }

            return ExitCodes.InvalidInput;
        }

        if (!context.Json)
        {
            await RemoteOutput.WriteSummaryAsync(context.Stdout, batch, context.Time.GetUtcNow());
        }

        return completion.AllSucceeded ? ExitCodes.Success : ExitCodes.SomeFailed;
    }

    private static string Done(Batch batch) => string.Create(CultureInfo.InvariantCulture, $"{batch.Finished:N0} of {batch.Total:N0} done");

    private ProgressSample Sample(BatchProgress seen) =>
        new(seen.Batch.Total, seen.Batch.Succeeded, seen.Batch.Failed, seen.Batch.InputTokens, seen.Batch.OutputTokens, InFlight: 0, Retries: 0)
        {
            CostUsd = seen.CostUsd,
            Remote = new RemoteFigures(seen.Batch.StatusName, seen.Eta, seen.Reconnecting),
            Trouble = LaneTrouble.Describe(seen.Batch.Lanes.Select(LaneTrouble.Of).OfType<LaneTrouble>(), context.Time.GetUtcNow()),
        };

    /// <summary>The last progress reported; the display reads it as often as it redraws, without a call to the server.</summary>
    private sealed class LatestProgress(BatchProgress first) : IProgress<BatchProgress>
    {
        private BatchProgress _value = first;

        public BatchProgress Value => Volatile.Read(ref _value);

        public void Report(BatchProgress value) => Volatile.Write(ref _value, value);
    }
}
