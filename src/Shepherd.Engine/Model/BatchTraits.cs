namespace Shepherd.Engine.Model;

/// <summary>
/// Which door a batch came in by: it decides how it is listed, shown and finished. The server
/// names the door a call comes in by the same way: <see cref="OpenAI"/> for its OpenAI API
/// (files, batches of both shapes, the dashboard's JSON) and <see cref="Anthropic"/> for the
/// Message Batches API; a call's door decides its error envelope and which batches it sees.
/// </summary>
public enum BatchDoor
{
    /// <summary><c>shepherd run</c>: results are written by the command itself.</summary>
    Run = 0,

    /// <summary>The OpenAI Batch API, from an uploaded file; as a call's door, every call of the OpenAI API.</summary>
    OpenAI = 1,

    /// <summary>Shepherd's inline batches (requests in the create call, which comes in by the OpenAI door).</summary>
    Inline = 2,

    /// <summary>The Anthropic Message Batches API.</summary>
    Anthropic = 3,

    /// <summary>The realtime door's calls that can wait, collected into a batch; each is answered to its caller, so no result files.</summary>
    Gateway = 4,
}

/// <summary>How soon a batch's items go, relative to other batches in the same lane.</summary>
public enum BatchPriority
{
    /// <summary>After every normal and high item of the lane.</summary>
    Low = 0,

    /// <summary>The default.</summary>
    Normal = 1,

    /// <summary>Before every normal and low item of the lane.</summary>
    High = 2,
}

/// <summary>How a batch's items are sent upstream.</summary>
public enum BatchMode
{
    /// <summary>The dispatcher sends each request as it goes, within the lanes' limits.</summary>
    Realtime = 0,

    /// <summary>The batch is handed to the upstream provider's own batch API (at its batch discount), polled, and its results mapped back.</summary>
    Native = 1,

    /// <summary>The dispatcher sends each request on the provider's flex tier (<c>service_tier: "flex"</c>, at the batch discount).</summary>
    Flex = 2,

    /// <summary>
    /// The planner chooses per request: native where an upstream has a batch API for the model,
    /// flex where one offers it, realtime otherwise; and before the deadline it moves what is still
    /// open to realtime, at the last moment that lets realtime finish it.
    /// </summary>
    Auto = 3,
}

/// <summary>How a batch uses the answer cache.</summary>
public enum CacheUse
{
    /// <summary>Every request is sent; no answer is taken from the cache or kept in it.</summary>
    Off = 0,

    /// <summary>
    /// A request whose answer is kept is answered from the cache, and every answer is kept; a
    /// request that asks for sampling (temperature above 0, <c>n</c> above 1) gets the answer drawn before, replayed.
    /// </summary>
    All = 1,

    /// <summary>As <see cref="All"/>, but requests that ask for sampling are always sent, and their answers not kept.</summary>
    Unsampled = 2,
}

/// <summary>Which way a request goes to its provider.</summary>
public enum ItemTier
{
    /// <summary>Sent by the dispatcher at the list price, within the lanes' limits.</summary>
    Realtime = 0,

    /// <summary>Handed to the provider's own batch API, at its batch discount.</summary>
    Native = 1,

    /// <summary>Sent by the dispatcher on the provider's flex tier, at the batch discount; the provider may refuse it for want of capacity.</summary>
    Flex = 2,
}

/// <summary>
/// The words a batch's mode is written and asked for as: <c>realtime</c>, <c>native</c>,
/// <c>flex</c> and <c>auto</c>, the same on the command line, in the server's fields and answers,
/// and in the configuration.
/// </summary>
public static class BatchModeWords
{
    /// <summary>Every mode with its word, in the order they are listed to a user.</summary>
    public static IReadOnlyList<(string Word, BatchMode Mode)> All { get; } =
        [("realtime", BatchMode.Realtime), ("native", BatchMode.Native), ("flex", BatchMode.Flex), ("auto", BatchMode.Auto)];

    /// <summary>The words, listed for a message: <c>realtime, native, flex, auto</c>.</summary>
    public static string Listed { get; } = string.Join(", ", All.Select(m => m.Word));

    /// <summary>The word for <paramref name="mode"/>.</summary>
    public static string Of(BatchMode mode) => All.First(m => m.Mode == mode).Word;

    /// <summary>The mode <paramref name="word"/> names (exactly, in lower case), or null when it names none.</summary>
    public static BatchMode? Parse(string word) => All.Where(m => m.Word == word).Select(m => (BatchMode?)m.Mode).FirstOrDefault();
}
