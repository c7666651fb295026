namespace Shepherd.Client;

/// <summary>
/// Hands a wait's progress to the caller's <see cref="IProgress{T}"/> and knows when it has been
/// handled. A <see cref="Progress{T}"/> posts its handler to run later (on its synchronization
/// context or the thread pool); the wait awaits <see cref="HandledAsync"/> before it returns, so
/// no progress handler of it runs after it has returned.
/// </summary>
internal sealed class ProgressRelay : IDisposable
{
    private readonly IProgress<BatchProgress>? _target;
    private readonly Progress<BatchProgress>? _posting;

    // By reference: a Progress<T> shared with other waits raises ProgressChanged for their reports too.
    private readonly HashSet<BatchProgress> _pending = new(ReferenceEqualityComparer.Instance);
    private TaskCompletionSource? _handled;

    public ProgressRelay(IProgress<BatchProgress>? target)
    {
        _target = target;
        _posting = target as Progress<BatchProgress>;
        if (_posting is not null)
        {
            _posting.ProgressChanged += OnHandled;
        }
    }

    public void Report(BatchProgress value)
    {
        if (_posting is not null)
        {
            lock (_pending)
            {
                _pending.Add(value);
            }
        }

        _target?.Report(value);
    }

    /// <summary>Completes once every report has been handled (at once for an <see cref="IProgress{T}"/> that handles as it is called).</summary>
    public Task HandledAsync(CancellationToken cancellationToken)
    {
        lock (_pending)
        {
            if (_pending.Count == 0)
            {
                return Task.CompletedTask;
            }

            _handled ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _handled.Task.WaitAsync(cancellationToken);
        }
    }

    public void Dispose()
    {
        if (_posting is not null)
        {
            _posting.ProgressChanged -= OnHandled;
        }
    }

    private void OnHandled(object? sender, BatchProgress value)
    {
        lock (_pending)
        {
            if (_pending.Remove(value) && _pending.Count == 0)
            {
                _handled?.TrySetResult();
            }
        }
    }
}
