using Microsoft.Extensions.Hosting;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Hosting;

/// <summary>
/// Holds a look at a batch until it has ended (<c>GET /v1/batches/{id}?wait=</c>), so a client
/// waiting for it learns of the end at once instead of at its next poll. Where batches end on this
/// node (the finalizer, the dispatcher and the native runner, a cancel, a refused input) the watch
/// is pulsed and every held look reads its batch again; a batch ended by another node sharing the
/// store is seen by a short poll of the store.
/// </summary>
internal sealed class BatchWatch(IBatchStore store, TimeProvider time, IHostApplicationLifetime lifetime)
{
    /// <summary>The longest a look is held, whatever it asks for.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(60);

    /// <summary>How often a held look reads its batch when no pulse comes: the end of a batch on another node.</summary>
    internal static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    private TaskCompletionSource _pulse = NewPulse();

    /// <summary>Tells the held looks that batches may have ended.</summary>
    public void Pulse() => Interlocked.Exchange(ref _pulse, NewPulse()).TrySetResult();

    /// <summary>
    /// <paramref name="batch"/> (read before) once it has ended, or as it is when
    /// <paramref name="wait"/> (at most <see cref="MaxWait"/>) has passed or the server stops.
    /// </summary>
    public async Task<BatchRecord> UntilEndedAsync(BatchRecord batch, TimeSpan wait, CancellationToken cancellationToken)
    {
        var until = time.GetUtcNow() + (wait < MaxWait ? wait : MaxWait);
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lifetime.ApplicationStopping);
        while (!batch.HasEnded)
        {
            var left = until - time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                break;
            }

            // Taken before the read: a pulse that comes after it is not missed.
            var pulse = Volatile.Read(ref _pulse).Task;
            if (await store.GetBatchAsync(batch.Id, cancellationToken) is not { } now)
            {
                // Deleted meanwhile (only an ended batch can be): the last reading stands.
                break;
            }

            batch = now;
            if (batch.HasEnded)
            {
                break;
            }

            try
            {
                await pulse.WaitAsync(left < PollInterval ? left : PollInterval, time, stopping.Token);
            }
            catch (TimeoutException)
            {
                // Time to read the store again.
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // The server stops: the client is answered now, and looks again elsewhere or later.
                break;
            }
        }

        return batch;
    }

    private static TaskCompletionSource NewPulse() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
