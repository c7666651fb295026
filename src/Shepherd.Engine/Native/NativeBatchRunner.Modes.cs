using Shepherd.Engine.Model;

namespace Shepherd.Engine.Native;

/// <content>
/// Which modes the upstreams allow, and the mode a door gives a new batch: the one it was asked
/// for when an upstream can serve it, or, when none was asked, <see cref="BatchMode.Auto"/>
/// where the batch has a deadline and a tier cheaper than realtime serves it.
/// </content>
public sealed partial class NativeBatchRunner
{
    /// <summary>
    /// True when some upstream with a native batch API serves <paramref name="model"/> (any
    /// model, when null) for <paramref name="endpoint"/>.
    /// </summary>
    public bool CanRun(string? model, string endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        return _providers.Any(p => p.Runs(endpoint) && (model is null || p.Options.Serves(model)));
    }

    /// <summary>True when some upstream that offers the flex tier at <paramref name="endpoint"/> serves <paramref name="model"/> (any model, when null).</summary>
    public bool CanFlex(string? model, string endpoint) => _flex.Any(f => f.OffersFlexAt(endpoint) && (model is null || f.Serves(model)));

    /// <summary>
    /// The mode of a new batch of <paramref name="model"/> (null: of the models its requests name)
    /// at <paramref name="endpoint"/>. A mode asked for is kept, unless it is native or flex and no
    /// upstream offers that tier for the batch: the choice then says what is missing. None asked,
    /// the batch runs <see cref="BatchMode.Auto"/> when it has a deadline and a batch API or a flex
    /// tier serves it (there is something cheaper than realtime to plan with), realtime otherwise.
    /// </summary>
    public ModeChoice ChooseMode(BatchMode? asked, string? model, string endpoint, bool hasDeadline)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var serving = model is null ? "the batch's models" : $"the model {model}";
        return asked switch
        {
            BatchMode.Native when !CanRun(model, endpoint) => new ModeChoice(BatchMode.Native)
            {
                Refusal = $"no upstream with a native batch API serves {serving} at {endpoint}",
                Code = "native_batch_unavailable",
            },
            BatchMode.Flex when !CanFlex(model, endpoint) => new ModeChoice(BatchMode.Flex)
            {
                Refusal = $"no upstream that offers the flex tier serves {serving}",
                Code = "flex_unavailable",
            },
            { } mode => new ModeChoice(mode),
            null => new ModeChoice(hasDeadline && (CanRun(model, endpoint) || CanFlex(model, endpoint)) ? BatchMode.Auto : BatchMode.Realtime),
        };
    }
}

/// <summary>The mode a new batch runs in, or why the mode asked for cannot run.</summary>
/// <param name="Mode">The mode.</param>
public sealed record ModeChoice(BatchMode Mode)
{
    /// <summary>Why <see cref="Mode"/> cannot run, in words that follow "mode native: "; null when it can.</summary>
    public string? Refusal { get; init; }

    /// <summary>A code for <see cref="Refusal"/>: <c>native_batch_unavailable</c> or <c>flex_unavailable</c>.</summary>
    public string? Code { get; init; }
}
