namespace Shepherd.Engine.Dispatch;

/// <summary>
/// An auto-reset wake-up: <see cref="Set"/> releases the current or next waiter once. A set
/// that arrives while nobody waits is kept, so no wake-up is lost between a check and a wait.
/// </summary>
internal sealed class AsyncSignal
{
    private TaskCompletionSource _pending = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Set() => Volatile.Read(ref _pending).TrySetResult();

    /// <summary>Waits until set or until <paramref name="timeout"/> passes on <paramref name="time"/>.</summary>
    public async Task WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        var pending = Volatile.Read(ref _pending);
        if (!pending.Task.IsCompleted)
        {
            if (timeout == TimeSpan.Zero)
            {
                return;
            }

            try
            {
                await pending.Task.WaitAsync(timeout, time, cancellationToken);
            }
            catch (TimeoutException)
            {
                return;
            }
        }

        Interlocked.CompareExchange(ref _pending, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), pending);
    }
}
