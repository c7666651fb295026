namespace Shepherd.Engine.Dispatch;

/// <summary>
/// One request a lane sent: when, its prompt and output allowance, the tokens it was counted as,
/// and, once answered, whether the provider admitted it (counted it against its limits).
/// </summary>
internal readonly record struct SentRequest(long Sequence, DateTimeOffset At, double PromptTokens, double OutputTokens, double Tokens, bool? Admitted = null);

/// <summary>
/// The recent requests of a lane, by sequence number: what went after a given request (to bring
/// the provider's count up to date) and what went within a run of them (to learn how the provider
/// counts). Holds at most <see cref="Capacity"/> requests; older ones are forgotten.
/// </summary>
internal sealed class SendHistory
{
    public const int Capacity = 8192;
    private readonly List<SentRequest> _sent = [];

    public void Add(SentRequest sent)
    {
        if (_sent.Count == Capacity)
        {
            _sent.RemoveRange(0, Capacity / 2);
        }

        _sent.Add(sent);
    }

    /// <summary>The request with this sequence number, if still remembered.</summary>
    public bool TryGet(long sequence, out SentRequest sent)
    {
        var index = _sent.Count == 0 ? -1 : sequence - _sent[0].Sequence;
        if (index >= 0 && index < _sent.Count)
        {
            sent = _sent[(int)index];
            return true;
        }

        sent = default;
        return false;
    }

    /// <summary>Records whether the provider admitted the request.</summary>
    public void Answered(long sequence, bool admitted)
    {
        if (TryGet(sequence, out var sent))
        {
            _sent[(int)(sequence - _sent[0].Sequence)] = sent with { Admitted = admitted };
        }
    }

    /// <summary>True when every request after <paramref name="sequence"/> is still remembered.</summary>
    public bool RemembersAfter(long sequence) => _sent.Count == 0 || _sent[0].Sequence <= sequence + 1;

    /// <summary>
    /// How many requests went at or after <paramref name="since"/>, and how many of them were not
    /// turned away (admitted, or not yet answered).
    /// </summary>
    public (int Sent, int Taken) CountSince(DateTimeOffset since)
    {
        var (sent, taken) = (0, 0);
        for (var i = _sent.Count - 1; i >= 0 && _sent[i].At >= since; i--)
        {
            sent++;
            taken += _sent[i].Admitted == false ? 0 : 1;
        }

        return (sent, taken);
    }

    /// <summary>The requests sent after <paramref name="sequence"/>, oldest first.</summary>
    public IEnumerable<SentRequest> After(long sequence)
    {
        for (var i = (int)Math.Max(0, sequence + 1 - (_sent.Count == 0 ? 0 : _sent[0].Sequence)); i < _sent.Count; i++)
        {
            yield return _sent[i];
        }
    }
}
