using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Shepherd.Server.Hosting;

/// <summary>
/// The uploaded files being read into their batches while the batches say <c>validating</c>:
/// the create call answers at once and the reading goes on here, where a cancel or a stop can end it.
/// </summary>
internal sealed partial class BackgroundImports(ILogger<BackgroundImports> logger)
{
    private readonly ConcurrentDictionary<string, (CancellationTokenSource Stop, Task Reading)> _running = new(StringComparer.Ordinal);

    /// <summary>Starts reading for <paramref name="batchId"/>; <paramref name="import"/> must not throw.</summary>
    public void Start(string batchId, Func<CancellationToken, Task> import)
    {
        var stop = new CancellationTokenSource();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = Task.Run(async () =>
        {
            await started.Task;
            try
            {
                await import(stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Stopped on purpose: by a cancel, which clears the batch, or by a server stop, after which it is read again.
            }
            catch (Exception ex)
            {
                LogImportFailed(ex, batchId);
            }
            finally
            {
                _running.TryRemove(batchId, out _);
                stop.Dispose();
            }
        });
        _running[batchId] = (stop, reading);
        started.SetResult();
    }

    /// <summary>Stops the reading for <paramref name="batchId"/>, if any, and waits until it has stopped.</summary>
    public async Task StopAsync(string batchId)
    {
        if (_running.TryGetValue(batchId, out var running))
        {
            await StopAsync(running);
        }
    }

    /// <summary>Stops every reading and waits for them all.</summary>
    public Task StopAllAsync() => Task.WhenAll(_running.Values.Select(StopAsync));

    private static async Task StopAsync((CancellationTokenSource Stop, Task Reading) running)
    {
        try
        {
            await running.Stop.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            // It ended on its own meanwhile.
        }

        await running.Reading;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Reading the input of batch {BatchId} failed; it stays validating until the server restarts")]
    private partial void LogImportFailed(Exception exception, string batchId);
}
