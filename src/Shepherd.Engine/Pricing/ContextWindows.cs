using System.Globalization;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Pricing;

/// <summary>
/// Finds prompts that cannot fit their model's context window, so a batch refuses them with
/// their line numbers instead of sending them for the provider to refuse one by one. Models of
/// unknown window (not in the price table, or without <see cref="ModelPrice.ContextTokens"/>) pass.
/// </summary>
/// <param name="prices">The windows, with the prices.</param>
/// <param name="tokens">How prompts are counted.</param>
public sealed class ContextWindows(PriceTable prices, TokenEstimator tokens)
{
    private readonly PriceTable _prices = prices ?? throw new ArgumentNullException(nameof(prices));
    private readonly TokenEstimator _tokens = tokens ?? throw new ArgumentNullException(nameof(tokens));

    /// <summary>Why the request <paramref name="body"/> of line <paramref name="line"/> cannot be sent to <paramref name="model"/>, or null when it fits.</summary>
    public InputError? Check(string model, ReadOnlySpan<byte> body, long line)
    {
        // A token is at least a byte of text: a body no longer than the window fits without counting.
        if (_prices.Find(model)?.ContextTokens is not { } window || body.Length <= window)
        {
            return null;
        }

        return Problem(model, _tokens.Estimate(model, body).PromptTokens, window, line);
    }

    /// <summary>The problem of a prompt of <paramref name="promptTokens"/> tokens in a window of <paramref name="window"/>, or null when it fits.</summary>
    internal static InputError? Problem(string model, int promptTokens, int window, long line) =>
        promptTokens > window
            ? new InputError(InputErrorCodes.ContextLengthExceeded, string.Create(CultureInfo.InvariantCulture, $"the prompt is about {promptTokens:N0} tokens, more than the {window:N0} of {model}'s context window"), line)
            : null;
}
