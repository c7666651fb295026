namespace Shepherd.Engine.Tests.Properties;

/// <summary>
/// Properties that judge how long a batch took on the fake clock. The clock moves only while the
/// dispatcher is quiet, and on a machine busy with other tests a dispatcher is slow to wake: these
/// run on their own, after the others, so what they measure is the dispatcher and not the load.
/// </summary>
[CollectionDefinition(nameof(ClockTimed), DisableParallelization = true)]
public sealed class ClockTimed;
