namespace Shepherd.Engine.Configuration;

/// <summary>A model's price in the <c>prices</c> section, in US dollars per million tokens.</summary>
public sealed class PriceConfig
{
    /// <summary>Per million prompt tokens.</summary>
    public decimal Input { get; set; }

    /// <summary>Per million answer tokens.</summary>
    public decimal Output { get; set; }

    /// <summary>Per million cached prompt tokens, where it differs from <see cref="Input"/>.</summary>
    public decimal? CachedInput { get; set; }

    /// <summary>
    /// The share the provider's batch API takes off.
    /// <value>The default is 0.5.</value>
    /// </summary>
    public decimal BatchDiscount { get; set; } = 0.5m;

    /// <summary>
    /// The model's context window in tokens: a prompt beyond it is refused with its line number.
    /// <value>The default is the built-in table's window for the model, or none (no check).</value>
    /// </summary>
    public int? ContextTokens { get; set; }
}
