namespace Shepherd.Engine.Batches;

/// <summary>Limits on what an input may hold.</summary>
public sealed class ImportOptions
{
    /// <summary>
    /// The longest line accepted, in bytes.
    /// <value>The default is 32 MiB.</value>
    /// </summary>
    public int MaxLineBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>
    /// The most requests one input may hold; null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public long? MaxItems { get; set; }

    /// <summary>
    /// Reading stops after this many errors; the rest of the input is not checked.
    /// <value>The default is 100.</value>
    /// </summary>
    public int MaxErrors { get; set; } = 100;

    /// <summary>
    /// Items written per transaction while importing.
    /// <value>The default is 2,000.</value>
    /// </summary>
    public int ChunkSize { get; set; } = 2000;

    /// <summary>
    /// Whether some upstream serves a model; a request for a model no upstream serves is an
    /// input error (<c>model_not_served</c>). Null accepts every model.
    /// <value>The default accepts every model.</value>
    /// </summary>
    public Func<string, bool>? ServesModel { get; set; }

    /// <summary>
    /// Refuses requests whose prompt cannot fit their model's context window; null checks none.
    /// <value>The default checks none; the engine's importer checks against its price table.</value>
    /// </summary>
    public Pricing.ContextWindows? ContextWindows { get; set; }

    /// <summary>A copy of these options that checks context windows by <paramref name="prices"/>, unless they name windows of their own.</summary>
    public ImportOptions WithContextWindows(Pricing.PriceTable prices, Dispatch.TokenEstimator tokens)
    {
        var copy = (ImportOptions)MemberwiseClone();
        copy.ContextWindows ??= new Pricing.ContextWindows(prices, tokens);
        return copy;
    }

    internal ImportOptions Validated()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxLineBytes, 16);
        if (MaxItems is { } max)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(max, 1L, nameof(MaxItems));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(MaxErrors, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ChunkSize, 1);
        return (ImportOptions)MemberwiseClone();
    }
}
